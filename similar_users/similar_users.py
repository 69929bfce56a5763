"""similar_users step: the users most similar to a query user (cosine of user embeddings), with their favourites.

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts.
Outputs: artifacts ``--sim_users_fn`` (CSV) and ``--ID_fn`` (the user id used, for later steps).
"""

from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.recommend import inputs_from_args, user_choice_from_args
from anime_recs.pipeline.steps.recommendation_steps import run_similar_users
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("similar_users", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("similar_users", vars(args), lambda ctx: run_similar_users(
        ctx, inputs_from_args(args), user_choice_from_args(args), args.id_query_number, args.num_faves, args.TV_only,
        args.sim_users_fn, args.sim_users_type, args.ID_fn, args.ID_type, args.random_seed,
        args.min_ratings))


if __name__ == "__main__":
    main()
