"""model_recs step: unseen anime ranked by the model's predicted rating for a user (1-10 scale).

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts (and the
similar_users step's id artifact when --from_flow). Output: ``--model_recs_fn``.
"""

from anime_recs.core.config import make_parser, optional_float, str_to_bool, str_to_list
from anime_recs.pipeline.steps.recommend import add_input_args, add_user_args, inputs_from_args, user_choice_from_args
from anime_recs.pipeline.steps.recommendation_steps import run_model_recs
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    add_input_args(parser)
    add_user_args(parser, from_flow_default=True)
    parser.add_argument("--model_num_recs", type=int, default=10, help="how many recommendations")
    parser.add_argument("--specify_types", type=str_to_bool, default=False, help="keep only anime of --anime_types")
    parser.add_argument("--anime_types", type=str_to_list, default=["TV", "Movie"], help="types, e.g. 'TV,OVA'")
    parser.add_argument("--specify_genres", type=str_to_bool, default=False, help="keep only anime with one of --model_genres")
    parser.add_argument("--model_genres", type=str_to_list, default=[], help="genres, e.g. 'Action,Comedy'")
    parser.add_argument("--min_score", type=optional_float, default=None, help="keep anime whose MyAnimeList Score is at least this")
    parser.add_argument("--max_score", type=optional_float, default=None, help="keep anime whose MyAnimeList Score is at most this")
    parser.add_argument("--model_recs_fn", default="model_recs.csv", help="output artifact name")
    parser.add_argument("--model_recs_type", default="model_recs", help="output artifact type")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("model_recs", vars(args), lambda ctx: run_model_recs(
        ctx, inputs_from_args(args), user_choice_from_args(args), args.model_num_recs,
        args.anime_types if args.specify_types else None, args.model_genres if args.specify_genres else None,
        args.min_score, args.max_score, args.model_recs_fn, args.model_recs_type, args.random_seed))


if __name__ == "__main__":
    main()
