"""evaluate step: RMSE/MAE and ranking metrics@k of our model and baselines on held-out ratings.

Input: ``--input_data`` (preprocessed stats). Output: artifact ``--output`` (one row per model).
Model options come from ``--model_config`` (as for neural_network) plus ``--overrides``.
"""

from anime_recs.core.config import load_group_config, make_parser
from anime_recs.pipeline.steps.evaluate import run_evaluate
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--input_data", default="preprocessed_stats.parquet:latest", help="preprocessed stats artifact NAME:VERSION")
    parser.add_argument("--input_type", default="preprocessed_data", help="expected type of --input_data")
    parser.add_argument("--model_config", default="../config/config.yaml", help="YAML/JSON with the model options (its `model` group)")
    parser.add_argument("--overrides", default="", help="model options to override, e.g. 'epochs=3'")
    parser.add_argument("--relevant_threshold", type=float, default=8.0, help="a TEST rating at or above this is relevant (1-10 scale)")
    parser.add_argument("--k", type=int, default=10, help="ranking cut-off")
    parser.add_argument("--output", default="evaluation_metrics.csv", help="output artifact name")
    parser.add_argument("--output_type", default="metrics", help="output artifact type")
    parser.add_argument("--random_seed", type=int, default=42, help="seed of our model's training")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("evaluate", vars(args), lambda ctx: run_evaluate(
        ctx, args.input_data, args.input_type, load_group_config(args.model_config, ("model",), args.overrides),
        args.relevant_threshold, args.k, args.output, args.output_type, args.random_seed))


if __name__ == "__main__":
    main()
