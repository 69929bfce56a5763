"""similar_users step: the users most similar to a query user (cosine of user embeddings), with their favourites.

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts.
Outputs: artifacts ``--sim_users_fn`` (CSV) and ``--ID_fn`` (the user id used, for later steps).
"""

from anime_recs.core.config import make_parser, str_to_bool
from anime_recs.pipeline.steps.recommend import add_input_args, add_user_args, inputs_from_args, user_choice_from_args
from anime_recs.pipeline.steps.recommendation_steps import run_similar_users
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    add_input_args(parser)
    add_user_args(parser, from_flow_default=False)
    parser.add_argument("--id_query_number", type=int, default=10, help="how many similar users")
    parser.add_argument("--num_faves", type=int, default=10, help="favourites listed per similar user")
    parser.add_argument("--TV_only", type=str_to_bool, default=False, help="list only TV series as favourites")
    parser.add_argument("--sim_users_fn", default="similar_users.csv", help="output artifact name")
    parser.add_argument("--sim_users_type", default="similar_users", help="output artifact type")
    parser.add_argument("--ID_fn", default="ID_used.csv", help="artifact name of the user id used")
    parser.add_argument("--ID_type", default="user_id", help="artifact type of the user id used")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("similar_users", vars(args), lambda ctx: run_similar_users(
        ctx, inputs_from_args(args), user_choice_from_args(args), args.id_query_number, args.num_faves, args.TV_only,
        args.sim_users_fn, args.sim_users_type, args.ID_fn, args.ID_type, args.random_seed))


if __name__ == "__main__":
    main()
