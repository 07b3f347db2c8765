"""Reading inputs: files, .gz/.zst, globs, directories, node paths, and bad bytes — nothing lost."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import polars as pl
import pytest
import zstandard

from meshlog.sources import MAX_LINE_BYTES, SourceStats, expand, path_metadata, read_lines
from tests.conftest import FIXTURES

ACCESS = (FIXTURES / "envoy" / "istio" / "access.log").read_bytes()
N = ACCESS.count(b"\n")


def read_all(path: Path | str, chunk_bytes: int | None = None) -> tuple[pl.DataFrame, SourceStats]:
    stats = SourceStats(str(path))
    frames = list(read_lines(str(path), stats, chunk_bytes=chunk_bytes))
    return pl.concat(frames) if frames else pl.DataFrame(), stats


@pytest.mark.parametrize("compress", ["plain", "gz", "zst"])
def test_compressed_files_read_like_plain(tmp_path: Path, compress: str) -> None:
    path = tmp_path / f"access.log.{compress}"
    data = {"plain": ACCESS, "gz": gzip.compress(ACCESS), "zst": zstandard.ZstdCompressor().compress(ACCESS)}[compress]
    path.write_bytes(data)
    frame, stats = read_all(path)
    assert frame["line"].to_list() == ACCESS.decode().splitlines()
    assert frame["line_no"].to_list() == list(range(1, N + 1))
    assert (stats.lines, stats.errors) == (N, [])


def test_small_blocks_keep_lines_whole_and_numbered(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(ACCESS)
    frame, _ = read_all(path, chunk_bytes=100)  # every line spans several reads
    assert frame["line"].to_list() == ACCESS.decode().splitlines()
    assert frame["line_no"].to_list() == list(range(1, N + 1))


def test_truncated_gzip_keeps_what_was_read_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cut.log.gz"
    path.write_bytes(gzip.compress(ACCESS * 50)[:-200])
    frame, stats = read_all(path)
    assert 0 < frame.height < 50 * N
    assert frame["line"].to_list() == [*(ACCESS * 50).decode().splitlines()[: frame.height - 1], frame["line"][-1]]
    assert len(stats.errors) == 1
    assert stats.errors[0].startswith(f"{path}: read failed after line ")
    assert "end-of-stream marker" in stats.errors[0]


def test_crlf_nul_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "odd.log"
    path.write_bytes(b"a\r\nb\x00c\n\nlast")
    frame, _ = read_all(path)
    assert frame["line"].to_list() == ["a", "b\x00c", "", "last"]


def test_invalid_utf8_is_kept_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "latin1.log"
    path.write_bytes(b"caf\xe9\nok\n\xff\xfe\n")
    frame, stats = read_all(path)
    assert frame["line"].to_list() == ["caf\ufffd", "ok", "\ufffd\ufffd"]
    assert stats.invalid_utf8 == 2


def test_giant_lines_are_cut_counted_and_memory_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "giant.log"
    with path.open("wb") as f:
        f.write(b"first\n" + b"x" * (3 * MAX_LINE_BYTES) + b"\nmiddle\n" + b"y" * (20 * MAX_LINE_BYTES))
    frame, stats = read_all(path, chunk_bytes=1 << 16)
    assert frame["line_no"].to_list() == [1, 2, 3, 4]
    assert frame["line"][0] == "first" and frame["line"][2] == "middle"
    assert all(len(x.encode()) <= MAX_LINE_BYTES for x in frame["line"])
    assert frame["line"][3].startswith("yyyy")
    assert stats.too_long == [2, 4]


@pytest.mark.parametrize(
    ("path", "meta"),
    [
        (
            "/var/log/pods/default_sleep-7656cf8794-7hkmv_2b7f3a5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/istio-proxy/0.log",
            {"namespace": "default", "pod": "sleep-7656cf8794-7hkmv", "container": "istio-proxy"},
        ),
        (
            "/var/log/containers/httpbin-74fb669cc6-jzs87_prod_istio-proxy-" + "a" * 64 + ".log",
            {"pod": "httpbin-74fb669cc6-jzs87", "namespace": "prod", "container": "istio-proxy"},
        ),
        ("/tmp/access.log", {}),
    ],
)
def test_node_paths_name_pod_namespace_container(path: str, meta: dict[str, str]) -> None:
    assert path_metadata(path) == meta


def test_node_layout_columns_on_every_row(tmp_path: Path) -> None:
    folder = tmp_path / "var/log/pods/default_sleep-7656cf8794-7hkmv_2b7f3a5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/istio-proxy"
    folder.mkdir(parents=True)
    (folder / "0.log").write_bytes(ACCESS)
    frame, _ = read_all(folder / "0.log")
    assert frame.select("pod", "namespace", "container").unique().rows() == [
        ("sleep-7656cf8794-7hkmv", "default", "istio-proxy")
    ]


def test_expand_directories_and_globs(tmp_path: Path) -> None:
    for name in ("b.log", "a.log", "sub/c.log.gz"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x\n")
    assert expand([str(tmp_path)]) == [str(tmp_path / n) for n in ("a.log", "b.log", "sub/c.log.gz")]
    assert expand([str(tmp_path / "*.log")]) == [str(tmp_path / "a.log"), str(tmp_path / "b.log")]
    assert expand([str(tmp_path / "nothing-*.log")]) == [str(tmp_path / "nothing-*.log")]
    assert expand([]) == ["-"]


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root reads everything; use a directory, which no one can read as a file
        target = tmp_path
        message = "is a directory"
    else:
        target = tmp_path / "secret.log"
        target.write_bytes(b"x\n")
        target.chmod(0)
        message = "permission denied"
    from meshlog.errors import InputError

    with pytest.raises(InputError, match=message):
        list(read_lines(str(target)))
