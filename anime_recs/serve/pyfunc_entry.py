"""The models-from-code file of the MLflow Model: MLflow runs it to build the served model.

``mlflow.pyfunc.log_model(python_model=<this file>, code_paths=[the anime_recs package, config/])``
(:func:`anime_recs.serve.pyfunc.log_pyfunc_model`) stores this file and the project's code with
the model, so loading needs neither a pickle of project objects nor the checkout.
"""

import mlflow

from anime_recs.serve.pyfunc import AnimeRecsPyfunc

mlflow.models.set_model(AnimeRecsPyfunc())
