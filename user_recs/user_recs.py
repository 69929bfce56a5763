"""user_recs step: unseen anime favoured by the most similar users, ranked by how many favourited each.

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts (and the
similar_users step's id artifact when --from_flow). Outputs: ``--user_recs_fn`` and ``--clouds_artifact``.
"""

from anime_recs.core.config import make_parser, str_to_bool, str_to_list
from anime_recs.pipeline.steps.recommend import add_cloud_args, add_input_args, add_user_args, inputs_from_args, user_choice_from_args
from anime_recs.pipeline.steps.recommendation_steps import CloudOptions, run_user_recs
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    add_input_args(parser)
    add_user_args(parser, from_flow_default=True)
    parser.add_argument("--user_num_recs", type=int, default=10, help="how many recommendations")
    parser.add_argument("--recs_n_sim_ID", type=int, default=10, help="how many similar users to ask")
    parser.add_argument("--num_faves", type=int, default=10, help="favourites taken from each similar user")
    parser.add_argument("--ID_spec_genres", type=str_to_bool, default=False, help="keep only anime with one of --ID_rec_genres")
    parser.add_argument("--ID_rec_genres", type=str_to_list, default=[], help="genres, e.g. 'Action,Comedy'")
    add_cloud_args(parser, "recs_favorite_genres.png", "recs_favorite_source_material.png")
    parser.add_argument("--user_recs_fn", default="user_recs.csv", help="output artifact name")
    parser.add_argument("--user_recs_type", default="user_recs", help="output artifact type")
    parser.add_argument("--clouds_artifact", default="user_recs_clouds", help="artifact name of the word clouds")
    return parser.parse_args(argv)


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
