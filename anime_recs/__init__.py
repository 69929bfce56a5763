"""anime_recs: the library behind the anime_recommendations MLflow pipeline.

Every step folder (``download/``, ``preprocess/``, ...) is a thin script that
calls one function of this package; all logic lives here.
"""

__version__ = "0.1.0"
