"""The MLflow pipeline: step bodies, how steps are run and tracked, and where their artifacts go.

- :mod:`.run`: the steps, their order and parameters (``main.py`` calls :func:`~.run.run_pipeline`);
- :mod:`.steps`: what each step does, given a :class:`~.tracking.StepContext`;
- :mod:`.tracking`: one step run (MLflow + W&B + the store); :mod:`.backends`: local, MLflow or W&B as the store
  of record; :mod:`.environments`: where a step runs; :mod:`.registry`: the MLflow Model Registry;
- :mod:`.plots`: the figures steps log.
"""
