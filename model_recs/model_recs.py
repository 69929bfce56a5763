"""model_recs step: unseen anime ranked by the model's predicted rating for a user (1-10 scale).

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts (and the
similar_users step's id artifact when --from_flow). Output: ``--model_recs_fn``.
"""

from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.recommend import inputs_from_args, user_choice_from_args
from anime_recs.pipeline.steps.recommendation_steps import run_model_recs
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("model_recs", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("model_recs", vars(args), lambda ctx: run_model_recs(
        ctx, inputs_from_args(args), user_choice_from_args(args), args.model_num_recs,
        args.anime_types if args.specify_types else None, args.model_genres if args.specify_genres else None,
        args.min_score, args.max_score, args.model_recs_fn, args.model_recs_type, args.random_seed))


if __name__ == "__main__":
    main()
