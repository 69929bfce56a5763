"""download step: fetch or generate the three raw files, validate them, publish them.

Outputs (type ``raw_data`` by default): the user stats (always parquet), the
all-anime table and the synopses table.
"""

from __future__ import annotations

import logging
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from anime_recs.data.files import RAW_FILE_NAMES, is_parquet, validate_file
from anime_recs.data.download import DOWNLOAD_DEADLINE, MAL_API, SAMPLE, csv_to_parquet, fetch, source_kind
from anime_recs.core.errors import UserInputError, plain
from anime_recs.core.io import write_csv, write_parquet
from anime_recs.data.mal import source as mal_source
from anime_recs.data.sample import make_sample
from anime_recs.pipeline.tracking import StepContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawFile:
    """One raw file to publish: where it comes from and what to call it."""

    kind: str  # stats, all_anime, synopses
    source: str
    artifact: str
    type: str
    description: str


@dataclass(frozen=True)
class SampleSize:
    """Size of the embedded sample data set."""

    n_users: int
    n_anime: int
    mean_items: int
    seed: int

    def check(self) -> None:
        """Refuse sizes below 1 before anything is generated.

        Raises:
            UserInputError: naming the option (``data.sample_users`` ...).
        """
        for option, value in (("sample_users", self.n_users), ("sample_anime", self.n_anime), ("sample_mean_items", self.mean_items)):
            if value < 1:
                raise UserInputError(f"data.{option} must be at least 1, got {plain(value)}; set the size of the embedded sample")


def _url_suffix(source: str) -> str:
    path = urllib.parse.urlparse(source).path if source_kind(source) == "http" else source
    return Path(path).suffix.lower() or ".bin"


def _materialise_sample(files: list[RawFile], size: SampleSize, workdir: Path) -> dict[str, Path]:
    sample = make_sample(size.n_users, size.n_anime, size.mean_items, size.seed)
    frames = {"stats": sample.stats, "all_anime": sample.all_anime, "synopses": sample.synopses}
    paths = {}
    for raw in files:
        if raw.source.strip().lower() == SAMPLE:
            target = workdir / (RAW_FILE_NAMES["stats"] if raw.kind == "stats" else f"{raw.kind}.csv")
            (write_parquet if raw.kind == "stats" else write_csv)(frames[raw.kind], target)
            paths[raw.kind] = target
    return paths


def run_download(
    ctx: StepContext,
    files: list[RawFile],
    sample_size: SampleSize,
    from_local: bool = False,
    local_fname: str = "",
    save_raw_locally: bool = False,
    raw_dir: str = "local_data/raw",
    download_timeout: float = DOWNLOAD_DEADLINE,
) -> dict[str, str]:
    """Fetch/generate, validate every file, then publish all of them; return their refs.

    Nothing is published unless every file validates, so bad input never
    creates a new artifact version; messages name each file as it was given.
    """
    workdir = ctx.workdir
    shown: dict[str, str] = {}
    sampled = {}
    # With from_local the user's file replaces the sample's stats: generate only the other tables.
    to_sample = [f for f in files if f.source.strip().lower() == SAMPLE and not (f.kind == "stats" and from_local)]
    if to_sample:
        sample_size.check()
        sampled = _materialise_sample(to_sample, sample_size, workdir)
    fetched: dict[str, Path] = {}
    for raw in files:
        if raw.kind == "stats" and from_local:
            if not local_fname:
                raise UserInputError("data.from_local is true but data.local_fname is empty; set it to your CSV of user stats")
            source = Path(local_fname).expanduser()
            if source.is_file() and is_parquet(source):
                fetched[raw.kind] = fetch(str(source), workdir / RAW_FILE_NAMES["stats"])
            else:
                print(f"converting {source} to parquet in chunks …", flush=True)
                target = workdir / RAW_FILE_NAMES["stats"]
                csv_to_parquet(source, target, shown=local_fname)
                fetched[raw.kind] = target
            shown[raw.kind] = local_fname
        elif raw.kind in sampled:
            fetched[raw.kind] = sampled[raw.kind]
            shown[raw.kind] = f"sample {raw.kind}"
        else:
            source = raw.source
            if source_kind(source) == MAL_API:  # the file of this kind in a finished `anime-recs mal refresh` folder
                source = str(mal_source.refreshed_file(source, raw.kind))
            target = workdir / f"{raw.kind}_download{_url_suffix(source)}"
            print(f"fetching {raw.kind} from {source}", flush=True)
            fetch(source, target, deadline=download_timeout)
            if raw.kind == "stats" and not is_parquet(target):
                converted = workdir / RAW_FILE_NAMES["stats"]
                csv_to_parquet(target, converted, shown=raw.source)
                target = converted
            fetched[raw.kind] = target
            shown[raw.kind] = raw.source

    rows = {}
    for raw in files:
        rows[raw.kind] = validate_file(raw.kind, fetched[raw.kind], shown[raw.kind])
        print(f"validated {raw.kind}: {rows[raw.kind]:,} rows", flush=True)

    refs = {}
    for raw in files:
        path = fetched[raw.kind]
        name_inside = _file_name_inside(raw, path)
        source = f"local:{local_fname}" if raw.kind == "stats" and from_local else raw.source
        metadata = {"source": source, "rows": rows[raw.kind]}
        if raw.kind in sampled:
            metadata.update(sample_size.__dict__)
        if source_kind(raw.source) == MAL_API:
            metadata.update(mal_source.metadata(raw.source))
        # move: the file is ours (in the step's scratch folder, or a hard link to the download cache), so the
        # published version shares its disk blocks instead of adding a copy.
        artifact = ctx.log_artifact(raw.artifact, raw.type, {name_inside: path}, raw.description, metadata, move=True)
        refs[raw.kind] = artifact.ref
        ctx.log_metrics({f"rows_{raw.kind}": rows[raw.kind]})
        if save_raw_locally:
            Path(raw_dir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(artifact.file(), Path(raw_dir) / name_inside)
            print(f"saved a copy in {Path(raw_dir) / name_inside}")
    return refs


def _file_name_inside(raw: RawFile, path: Path) -> str:
    """File name inside the artifact: the artifact name, with the real format's extension."""
    stem = Path(raw.artifact).stem if Path(raw.artifact).suffix in (".csv", ".parquet") else raw.artifact
    return f"{stem}{'.parquet' if is_parquet(path) else '.csv'}"
