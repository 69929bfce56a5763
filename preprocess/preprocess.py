"""preprocess step: clean the raw user stats and min-max scale ratings to [0, 1].

Input: ``--raw_stats`` (and ``--all_anime`` for ``--drop_half_watched``).
Output: artifact ``--preprocessed_stats`` (type ``--preprocessed_artifact_type``).
"""

from anime_recs.core.config import make_parser, str_to_bool
from anime_recs.data.preprocess import PreprocessOptions
from anime_recs.data.preprocess_file import DEFAULT_MEMORY_LIMIT_GB
from anime_recs.pipeline.steps.preprocess import run_preprocess
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--raw_stats", default="user_stats.parquet:latest", help="raw user-stats artifact NAME:VERSION")
    parser.add_argument("--all_anime", default="all_anime.csv:latest", help="all-anime artifact (episode counts for --drop_half_watched)")
    parser.add_argument("--raw_type", default="raw_data", help="expected type of the raw artifacts")
    parser.add_argument("--preprocessed_stats", default="preprocessed_stats.parquet", help="output artifact name")
    parser.add_argument("--preprocessed_artifact_type", default="preprocessed_data", help="output artifact type")
    parser.add_argument("--preprocessed_artifact_description", default="Preprocessed stats for model training", help="output description")
    parser.add_argument("--num_reviews", type=int, default=50, help="keep only users with at least this many rows after the other rules")
    parser.add_argument("--drop_half_watched", type=str_to_bool, default=False, help="drop rows where under half the episodes were watched")
    parser.add_argument("--drop_unwatched", type=str_to_bool, default=False, help="drop rows with 0 watched episodes")
    parser.add_argument("--drop_plan", type=str_to_bool, default=False, help="drop plan-to-watch rows (watching_status 6)")
    parser.add_argument("--drop_unrated", type=str_to_bool, default=True, help="drop rating 0 rows (MyAnimeList's 'not rated')")
    parser.add_argument("--save_clean_locally", type=str_to_bool, default=False, help="also copy the result to --clean_dir")
    parser.add_argument("--clean_dir", default="local_data/clean", help="folder for the local copy")
    parser.add_argument("--memory_limit_gb", type=float, default=DEFAULT_MEMORY_LIMIT_GB,
                        help="about how much memory the data may take (batches and buckets shrink to fit)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    options = PreprocessOptions(args.num_reviews, args.drop_half_watched, args.drop_unwatched, args.drop_plan, args.drop_unrated)
    run_step("preprocess", vars(args), lambda ctx: run_preprocess(
        ctx, args.raw_stats, args.all_anime, args.preprocessed_stats, args.preprocessed_artifact_type,
        args.preprocessed_artifact_description, options, args.raw_type, args.save_clean_locally, args.clean_dir,
        args.memory_limit_gb))


if __name__ == "__main__":
    main()
