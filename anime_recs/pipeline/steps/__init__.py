"""Step bodies: what each MLflow step does, given a :class:`~anime_recs.pipeline.tracking.StepContext`.

The scripts in the step folders parse arguments and call one function here.
"""
