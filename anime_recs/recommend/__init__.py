"""Serving recommendations: the catalogue, users' ratings and the three recommenders over one model."""

from .recommender import AnimeRecommender, UserPreferences

__all__ = ["AnimeRecommender", "UserPreferences"]
