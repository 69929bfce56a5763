"""similar_anime step: the anime most similar to a query anime (cosine of anime embeddings).

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts.
Output: artifact ``--sim_anime_fn`` (CSV: MAL_ID, Name, Similarity, Genres, Type, Episodes, Score, Synopsis, ...).
"""

from anime_recs.core.config import make_parser, str_to_bool, str_to_list
from anime_recs.pipeline.steps.recommend import add_input_args, inputs_from_args
from anime_recs.pipeline.steps.recommendation_steps import run_similar_anime
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    add_input_args(parser)
    parser.add_argument("--anime_query", default="Rental Magica", help="anime name (any of its names; case, accents, symbols ignored) or MAL_ID")
    parser.add_argument("--random_anime", type=str_to_bool, default=False, help="query a random anime instead")
    parser.add_argument("--a_query_number", type=int, default=10, help="how many similar anime")
    parser.add_argument("--an_spec_genres", type=str_to_bool, default=False, help="keep only anime with one of --anime_rec_genres")
    parser.add_argument("--anime_rec_genres", type=str_to_list, default=[], help="genres, e.g. 'Action,Comedy'")
    parser.add_argument("--spec_types", type=str_to_bool, default=False, help="keep only anime of --types")
    parser.add_argument("--types", type=str_to_list, default=["TV", "Movie"], help="types, e.g. 'TV,Movie'")
    parser.add_argument("--sim_anime_fn", default="similar_anime.csv", help="output artifact name")
    parser.add_argument("--sim_anime_type", default="similar_anime", help="output artifact type")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("similar_anime", vars(args), lambda ctx: run_similar_anime(
        ctx, inputs_from_args(args), args.anime_query, args.random_anime, args.a_query_number,
        args.anime_rec_genres if args.an_spec_genres else None, args.types if args.spec_types else None,
        args.sim_anime_fn, args.sim_anime_type, args.random_seed))


if __name__ == "__main__":
    main()
