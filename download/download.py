"""download step: fetch (or generate) the raw user stats, all-anime and synopses files.

Outputs: artifacts ``--stats_artifact``, ``--all_anime_artifact``, ``--synopses_artifact``.
Run ``python download.py --help`` for every option.
"""

from anime_recs.core.options import step_parser
from anime_recs.pipeline.steps.download import RawFile, SampleSize, run_download
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one): declared in anime_recs.core.options, defaults from config.yaml."""
    return step_parser("download", __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse options and run the step."""
    args = parse_args(argv)
    files = [
        RawFile(kind, getattr(args, f"{kind}_url"), getattr(args, f"{kind}_artifact"), getattr(args, f"{kind}_type"), getattr(args, f"{kind}_description"))
        for kind in ("stats", "all_anime", "synopses")
    ]
    size = SampleSize(args.sample_users, args.sample_anime, args.sample_mean_items, args.random_seed)
    run_step("download", vars(args), lambda ctx: run_download(
        ctx, files, size, args.from_local, args.local_fname, args.save_raw_locally, args.raw_dir, args.download_timeout))


if __name__ == "__main__":
    main()
