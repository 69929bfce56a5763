"""similar_anime step: the anime most similar to a query anime (cosine of anime embeddings).

Inputs: embeddings bundle, preprocessed stats, all-anime, synopses artifacts.
Output: artifact ``--sim_anime_fn`` (CSV: MAL_ID, Name, Similarity, Genres, Type, Episodes, Score, Synopsis, ...).
"""

from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.recommend import inputs_from_args
from anime_recs.pipeline.steps.recommendation_steps import run_similar_anime
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("similar_anime", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    run_step("similar_anime", vars(args), lambda ctx: run_similar_anime(
        ctx, inputs_from_args(args), args.anime_query, args.random_anime, args.a_query_number,
        args.anime_rec_genres if args.an_spec_genres else None, args.types if args.spec_types else None,
        args.sim_anime_fn, args.sim_anime_type, args.random_seed, args.min_ratings))


if __name__ == "__main__":
    main()
