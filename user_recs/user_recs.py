"""user_recs step: unseen anime favoured by the most similar users, ranked by how many favourited each.

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts (and the
similar_users step's id artifact when --from_flow). Outputs: ``--user_recs_fn`` and ``--clouds_artifact``.
"""

from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.recommend import inputs_from_args, user_choice_from_args
from anime_recs.pipeline.steps.recommendation_steps import CloudOptions, run_user_recs
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("user_recs", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    clouds = CloudOptions(args.cloud_width, args.cloud_height, args.genre_fn, args.source_fn, args.cloud_type)
    run_step("user_recs", vars(args), lambda ctx: run_user_recs(
        ctx, inputs_from_args(args), user_choice_from_args(args), args.user_num_recs, args.recs_n_sim_ID, args.num_faves,
        args.ID_rec_genres if args.ID_spec_genres else None, args.favorite_percentile, clouds,
        args.user_recs_fn, args.user_recs_type, args.clouds_artifact, args.random_seed))


if __name__ == "__main__":
    main()
