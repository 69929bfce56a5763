"""Serving recommendations: the catalogue, users' ratings and the three recommenders over one model."""

from anime_recs.recommend.recommender import AnimeRecommender, UserPreferences

__all__ = ["AnimeRecommender", "UserPreferences"]
