"""evaluate step: RMSE/MAE and ranking metrics@k of our model and baselines on held-out ratings.

Input: ``--input_data`` (preprocessed stats). Output: artifact ``--output`` (one row per model).
Model options come from ``--model_config`` (as for neural_network) plus ``--overrides``.
"""

from anime_recs.core.config import load_group_config
from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.evaluate import run_evaluate
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("evaluate", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("evaluate", vars(args), lambda ctx: run_evaluate(
        ctx, args.input_data, args.input_type, load_group_config(args.model_config, ("model",), args.overrides),
        args.relevant_threshold, args.k, args.output, args.output_type, args.random_seed))


if __name__ == "__main__":
    main()
