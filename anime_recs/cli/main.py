"""The ``anime-recs`` command: ask for recommendations, inspect the artifact store, refresh data from MyAnimeList.

    anime-recs similar NAME | recommend --user ID | users --user ID | serve   (see anime_recs.cli.query)
    anime-recs artifacts list [NAME]
    anime-recs artifacts path NAME[:VERSION]
    anime-recs artifacts verify [NAME]
    anime-recs mal refresh [--out DIR] [--anime-ids-from ...] [--since-year YEAR] [--users FILE] ...
    anime-recs tune --family ease --grid l2_per_count=40,80,160 [--write]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from anime_recs.cli import query
from anime_recs.pipeline import tuning
from anime_recs.store.artifacts import ArtifactStore
from anime_recs.core.errors import UserInputError, one_line
from anime_recs.core.io import format_table
from anime_recs.cli import mal as mal_cli


def _list(store: ArtifactStore, name: str | None) -> None:
    names = [name] if name else store.names()
    rows = []
    for artifact_name in names:
        versions = store.versions(artifact_name)
        if name and not versions:
            store.get(artifact_name)  # raises the helpful "no artifact named ..." error
        latest = store.latest_version(artifact_name)
        for version in versions:
            rows.append({
                "artifact": version.ref + (" (latest)" if version.version == latest else ""),
                "type": version.type,
                "files": ", ".join(version.files),
                "MB": round(sum(f["size"] for f in version.files.values()) / 1e6, 2),
                "created": version.created,
                "description": version.description,
            })
    if not rows:
        print(f"no artifacts in {store.root} yet; run the pipeline first")
        return
    print(f"artifacts in {store.root}")
    print(format_table(pd.DataFrame(rows), max_rows=10_000, max_colwidth=48))


def _verify(store: ArtifactStore, name: str | None) -> int:
    """Print every version's state; 1 when one is damaged."""
    rows = store.verify(name)
    if name is not None and not rows:
        store.get(name)  # raises the helpful "no artifact named ..." error
    if not rows:
        print(f"no artifacts in {store.root} yet; run the pipeline first")
        return 0
    table = pd.DataFrame(rows)
    print(f"artifacts in {store.root}")
    print(format_table(table, max_rows=10_000, max_colwidth=100))
    damaged = int((table["state"] == "damaged").sum())
    print(f"{int((table['state'] == 'ok').sum())} ok, {int((table['state'] == 'not visible').sum())} not visible "
          f"(unfinished publishes: never read), {damaged} damaged")
    return 1 if damaged else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``anime-recs`` parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="anime-recs", description="Ask the trained model for recommendations; inspect the artifact store; refresh the data from MyAnimeList.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", default=None, help="artifact store folder (default: $ANIME_RECS_ARTIFACTS, else artifacts/ beside the sqlite store of $MLFLOW_TRACKING_URI, else ./runs/artifacts)")
    commands = parser.add_subparsers(dest="group", required=True)
    artifacts = commands.add_parser("artifacts", help="list artifacts or print the folder of one version")
    actions = artifacts.add_subparsers(dest="action", required=True)
    list_cmd = actions.add_parser("list", help="every published version (or those of one NAME)")
    list_cmd.add_argument("name", nargs="?", default=None, help="only this artifact")
    path_cmd = actions.add_parser("path", help="print the folder (or only file) of NAME[:VERSION] after checking its hashes")
    path_cmd.add_argument("ref", help="NAME, NAME:vN or NAME:latest")
    verify_cmd = actions.add_parser("verify", help="check every version's manifest, commit and file hashes "
                                                   "(exit status 1 when one is damaged)")
    verify_cmd.add_argument("name", nargs="?", default=None, help="only this artifact")
    mal_cli.add_commands(commands)
    tuning.add_command(commands)
    query.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``anime-recs`` console script."""
    args = build_parser().parse_args(argv)
    store = ArtifactStore(args.root)
    try:
        if args.group == "mal":
            sys.exit(mal_cli.run(args, args.root))
        elif args.group == "tune":
            sys.exit(tuning.run_cli(args.family, args.grid, args.datasets, args.data_dir, args.write))
        elif args.group != "artifacts":
            query.main_exit(args, args.root)
        elif args.action == "list":
            _list(store, args.name)
        elif args.action == "verify":
            sys.exit(_verify(store, args.name))
        else:
            artifact = store.get(args.ref)
            print(artifact.file() if len(artifact.files) == 1 else artifact.path)
    except UserInputError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
