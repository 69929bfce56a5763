"""download step: fetch (or generate) the raw user stats, all-anime and synopses files.

Outputs: artifacts ``--stats_artifact``, ``--all_anime_artifact``, ``--synopses_artifact``.
Run ``python download.py --help`` for every option.
"""

from anime_recs.core.config import make_parser, str_to_bool
from anime_recs.pipeline.steps.download import RawFile, SampleSize, run_download
from anime_recs.pipeline.tracking import run_step


def parse_args(argv: list[str] | None = None):
    """Command-line options (MLproject passes every one)."""
    parser = make_parser(__doc__.splitlines()[0])
    for kind, default_name in (("stats", "user_stats.parquet"), ("all_anime", "all_anime.csv"), ("synopses", "synopses.csv")):
        parser.add_argument(f"--{kind}_url", default="sample", help=f"{kind} source: 'sample', an http(s) URL, a file:// URI, a local path, "
                            "or mal-api:FOLDER (a finished `anime-recs mal refresh --out FOLDER`)")
        parser.add_argument(f"--{kind}_artifact", default=default_name, help=f"artifact name for the {kind} file")
        parser.add_argument(f"--{kind}_type", default="raw_data", help=f"artifact type for the {kind} file")
        parser.add_argument(f"--{kind}_description", default=f"raw {kind} file", help=f"artifact description for the {kind} file")
    parser.add_argument("--from_local", type=str_to_bool, default=False, help="read user stats from --local_fname (CSV converted to parquet in chunks)")
    parser.add_argument("--local_fname", default="", help="local user-stats CSV or parquet used when --from_local is true")
    parser.add_argument("--save_raw_locally", type=str_to_bool, default=False, help="also copy the raw files to --raw_dir")
    parser.add_argument("--raw_dir", default="local_data/raw", help="folder for local copies of the raw files")
    parser.add_argument("--sample_users", type=int, default=2000, help="users in the embedded sample")
    parser.add_argument("--sample_anime", type=int, default=800, help="anime in the embedded sample")
    parser.add_argument("--sample_mean_items", type=int, default=90, help="mean list entries per user in the sample")
    parser.add_argument("--download_timeout", type=float, default=3600.0, help="seconds a download may take in all")
    parser.add_argument("--random_seed", type=int, default=42, help="seed of the embedded sample")
    return parser.parse_args(argv)


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
