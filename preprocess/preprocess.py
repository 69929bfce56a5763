"""preprocess step: clean the raw user stats; ratings keep their 1-10 scale (its range is recorded).

Input: ``--raw_stats`` (and ``--all_anime`` for ``--drop_half_watched``).
Output: artifact ``--preprocessed_stats`` (type ``--preprocessed_artifact_type``).
"""

from anime_recs.core.options import step_parser
from anime_recs.data.preprocess import PreprocessOptions
from anime_recs.pipeline.steps.preprocess import run_preprocess
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("preprocess", __doc__).parse_args(argv)


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
