"""neural_network step: fit the configured model family on the preprocessed stats.

Input: ``--input_data`` (preprocessed stats). Outputs: the model and embeddings artifacts
named in the ``model`` config group (plus best weights, history and loss plot for the
original network, ``family=original``). Model options come from ``--model_config`` (the
``model`` and ``nn_arts`` groups of a YAML/JSON file; reading config/config.yaml composes
the default family's config/model/<family>.yaml) and ``--overrides`` such as
``"family=original epochs=3"`` or ``"ranking.l2_per_count=40"``.
"""

from anime_recs.core.config import load_group_config
from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.neural_network import run_neural_network
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("neural_network", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("neural_network", vars(args), lambda ctx: run_neural_network(
        ctx, args.input_data, args.input_type, load_group_config(args.model_config, ("model", "nn_arts"), args.overrides),
        args.random_seed, args.anime_df, args.synopses_df))


if __name__ == "__main__":
    main()
