"""Download sources: local path, file:// URI, http:// on loopback, CSV -> parquet in chunks."""

from __future__ import annotations

import hashlib
import http.server
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from anime_recs.data.download import csv_to_parquet, fetch, source_kind
from anime_recs.core.errors import UserInputError
from tests.conftest import serving


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 serving a temp folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    with serving(handler) as url:
        yield url, folder


def test_source_kinds() -> None:
    assert source_kind("sample") == "sample"
    assert source_kind("https://x.org/a.csv") == "http"
    assert source_kind("file:///tmp/a.csv") == "file"
    assert source_kind("data/a.csv") == "file"
    with pytest.raises(UserInputError, match="unsupported source"):
        source_kind("ftp://x/a.csv")


def test_local_path_and_file_uri(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text("x\n1\n")
    assert fetch(str(src), tmp_path / "out1.csv").read_text() == "x\n1\n"
    assert fetch(src.as_uri(), tmp_path / "out2.csv").read_text() == "x\n1\n"
    with pytest.raises(UserInputError, match="does not exist"):
        fetch(str(tmp_path / "missing.csv"), tmp_path / "out3.csv")
    assert not (tmp_path / "out3.csv").exists()


def test_http_download_streams_to_file(http_root: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = http_root
    payload = bytes(range(256)) * 20_000  # 5 MB, several chunks
    (folder / "big.bin").write_bytes(payload)
    out = fetch(f"{url}/big.bin", tmp_path / "big.bin", progress=False)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(payload).digest()
    with pytest.raises(UserInputError, match="HTTP 404"):
        fetch(f"{url}/nope.csv", tmp_path / "nope.csv", progress=False)
    assert not (tmp_path / "nope.csv").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_unreachable_url_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserInputError, match="cannot reach") as info:
        fetch(f"http://127.0.0.1:{port}/a.csv", tmp_path / "a.csv", timeout=5, progress=False)
    assert "\n" not in str(info.value)


def test_csv_to_parquet_in_chunks_keeps_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anime_recs.core.io.ROW_GROUP", 20_000)
    frame = pd.DataFrame({"user_id": range(50_000), "anime_id": 1, "rating": 5, "watching_status": 2,
                          "watched_episodes": 3, "extra": "x"})
    src = tmp_path / "animelist.csv"
    frame.to_csv(src, index=False)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    rows = csv_to_parquet(src, tmp_path / "out.parquet", block_size=64 << 10)  # many small blocks
    assert rows == 50_000
    parquet = pq.ParquetFile(tmp_path / "out.parquet")
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assert sizes == [20_000, 20_000, 10_000]  # row groups of ROW_GROUP rows, not of the reader's small blocks
    assert "extra" not in parquet.schema_arrow.names
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


def test_ratings_only_csv_gets_completed_status(tmp_path: Path) -> None:
    src = tmp_path / "rating_complete.csv"
    pd.DataFrame({"user_id": [0, 0, 1], "anime_id": [5, 6, 5], "rating": [9, 7, 8]}).to_csv(src, index=False)
    assert csv_to_parquet(src, tmp_path / "out.parquet") == 3
    table = pd.read_parquet(tmp_path / "out.parquet")
    assert table["watching_status"].tolist() == [2, 2, 2] and table["watched_episodes"].tolist() == [0, 0, 0]
    pd.DataFrame({"user_id": [0], "anime_id": [5]}).to_csv(src, index=False)
    with pytest.raises(UserInputError, match=r"lacks column\(s\) rating"):
        csv_to_parquet(src, tmp_path / "out2.parquet")


class FlakyRangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload with an ETag and Range support; the first answer breaks off halfway."""

    payload = b""
    requests: list[dict[str, str]] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append({k: v for k, v in self.headers.items() if k in ("Range", "If-None-Match")})
        etag = '"' + hashlib.sha256(self.payload).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.end_headers()
            return
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("ETag", etag)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.end_headers()
        if len(self.requests) == 1:  # the first connection breaks after half of the file
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


def test_broken_download_resumes_and_a_second_fetch_uses_the_cache(tmp_path: Path, download_cache: Path) -> None:
    FlakyRangeHandler.payload = bytes(range(256)) * 8_000  # 2 MB
    FlakyRangeHandler.requests = []
    with serving(FlakyRangeHandler) as root:
        url = f"{root}/stats.parquet"
        first = fetch(url, tmp_path / "first.bin", progress=False)
        assert first.read_bytes() == FlakyRangeHandler.payload
        assert FlakyRangeHandler.requests[1]["Range"] == f"bytes={len(FlakyRangeHandler.payload) // 2}-"  # resumed, not restarted
        second = fetch(url, tmp_path / "second.bin", progress=False)
        assert second.read_bytes() == FlakyRangeHandler.payload
        assert len(FlakyRangeHandler.requests) == 3 and "If-None-Match" in FlakyRangeHandler.requests[2]  # answered 304
        assert second.stat().st_ino == first.stat().st_ino  # one copy on disk, shared with the cache
        (cached,) = download_cache.glob("*/data")
        assert cached.stat().st_ino == first.stat().st_ino
