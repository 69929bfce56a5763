"""Serving: one loaded model version (:mod:`.service`), reloads (:mod:`.holder`), the HTTP API and page (:mod:`.app`), the MLflow pyfunc model (:mod:`.pyfunc`)."""
