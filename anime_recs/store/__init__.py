"""The versioned artifact store (``name:v3``, ``name:latest``): atomic, hash-checked publishes and file locks.

Above :mod:`anime_recs.core` only; the pipeline's backends (MLflow, W&B) build on it.
"""
