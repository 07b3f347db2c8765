"""Every wrapped stream gives the access rows of its plain form (../shared/samples/streams, peer data).

The samples wrap some of the same Istio 1.22 access lines: the sleep sidecar's
(``kubectl-plain.log``), two httpbin sidecars' (the multi-pod samples) and one line over
16 KiB (the node-file forms, which split it). Their plain text is the reference: every
wrapped form must give the same typed rows, account for every line (none unparsed) and
say which pod / namespace / container each came from.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from meshlog.envelopes import Unwrapper
from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.presets import resolve
from meshlog.parse import AccessLog, lines_frame, parse_lines
from meshlog.parse.detect import detect
from meshlog.sources import SourceStats, read_lines
from tests.conftest import PEER_DATA, SHARED

SAMPLES = SHARED / "samples" / "streams"
TEXT, JSON = resolve("istio-upstream-cluster"), resolve("istio-json")
SLEEP, JZS87, X2P4Q = "sleep-7656cf8794-7hkmv", "httpbin-74fb669cc6-jzs87", "httpbin-74fb669cc6-x2p4q"

# The httpbin sidecars' access lines as Envoy printed them, and the >16 KiB line.
HTTPBIN_LINES = [
    (
        '[2024-06-28T06:41:10.124Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 3 1 "-" "curl/8.8.0" '
        '"84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.244.1.27:8080" inbound|8080|| 127.0.0.6:41854 '
        "10.244.1.27:8080 10.244.1.23:37652 outbound_.8000_._.httpbin.default.svc.cluster.local default"
    ),
    (
        '[2024-06-28T06:41:11.003Z] "GET /headers HTTP/1.1" 200 - via_upstream - "-" 0 512 5 4 "203.0.113.7" '
        '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36" '
        '"3f1c9a52-0d2e-9c8b-a1f4-6e2d7b9c0a11" "httpbin:8000" "10.244.2.14:8080" inbound|8080|| 127.0.0.6:39121 '
        "10.244.2.14:8080 10.244.1.23:52004 outbound_.8000_._.httpbin.default.svc.cluster.local default"
    ),
    (
        '[2024-06-28T06:41:11.503Z] "GET /headers HTTP/1.1" 200 - via_upstream - "-" 0 512 5 4 "203.0.113.7" '
        '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36" '
        '"77aa0c13-0d2e-9c8b-a1f4-6e2d7b9c0a11" "httpbin:8000" "10.244.2.14:8080" inbound|8080|| 127.0.0.6:39121 '
        "10.244.2.14:8080 10.244.1.23:52004 outbound_.8000_._.httpbin.default.svc.cluster.local default"
    ),
]
LONG_LINE = (
    '[2024-06-28T06:41:20.000Z] "GET /anything?q='
    + "a" * 16800
    + ' HTTP/1.1" 414 - via_upstream - "-" 0 0 1 1 "-" "curl/8.8.0" "5a1b2c3d-4e5f-9a6b-8c7d-0e1f2a3b4c5d" '
    '"httpbin:8000" "10.244.1.27:8080" outbound|8000||httpbin.default.svc.cluster.local 10.244.1.23:37700 '
    "10.96.45.184:8000 10.244.1.23:46700 - default"
)

# An access line is known by its %START_TIME% (ms); which pod logged it.
POD_OF = {
    **dict.fromkeys(
        ["06:41:10.123", "06:41:11.002", "06:41:12.801", "06:41:13.002", "06:41:15.550", "06:41:16.700"], SLEEP
    ),
    "06:41:20.000": SLEEP,
    "07:10:50.004": SLEEP,
    "06:41:10.124": JZS87,
    "06:41:11.003": X2P4Q,
    "06:41:11.503": X2P4Q,
}
PLAIN = {"06:41:10.123", "06:41:11.002", "06:41:12.801", "06:41:13.002", "06:41:15.550", "06:41:16.700", "07:10:50.004"}
NODE = PLAIN | {"06:41:20.000"}
BOTH = {"06:41:10.124", "06:41:11.003"}  # the httpbin side of two of the sleep pod's requests
COLLECTED = PLAIN - {"07:10:50.004"} | BOTH
FOLLOW = {"06:41:10.124", "06:41:11.003", "06:41:11.503"}
JSON_LINES = {"06:41:10.123", "06:41:12.801", "06:41:15.550"}

KUBECTL, COLLECTOR = ("pod", "container"), ("pod", "namespace", "container")

# file → (access lines by start time, wrapper columns it fills, what Unwrapper.detected says)
CASES: dict[str, tuple[set[str], tuple[str, ...], list[str]]] = {
    "kubectl-plain.log": (PLAIN, (), []),
    "kubectl-timestamps.log": (PLAIN, (), ["kubectl-timestamps"]),
    "kubectl-prefix.log": (PLAIN, KUBECTL, ["kubectl-prefix"]),
    "kubectl-prefix-timestamps.log": (PLAIN, KUBECTL, ["kubectl-prefix", "kubectl-timestamps"]),
    "kubectl-selector-all-containers-prefix.log": (BOTH, KUBECTL, ["kubectl-prefix"]),
    "kubectl-follow-selector-prefix.log": (FOLLOW, KUBECTL, ["kubectl-prefix"]),
    "kubectl-timestamps-longline-split.log": ({"06:41:16.700", "06:41:20.000"}, (), ["kubectl-timestamps"]),
    "stern-default.log": (FOLLOW, KUBECTL, ["stern"]),
    "cri-containerd.log": (NODE, (), ["cri"]),
    "cri-crio.log": (NODE, (), ["cri"]),
    "docker-json-file.log": (NODE, (), ["docker"]),
    "fluentd-out_file-docker-json-parser.log": (PLAIN | BOTH, COLLECTOR, ["fluentd-out_file"]),
    "fluentd-out_file-cri-parser.log": (NODE | BOTH, COLLECTOR, ["fluentd-out_file"]),
    "fluentd-out_file-format-json.log": (COLLECTED - {"06:41:15.550", "06:41:16.700"}, COLLECTOR, ["collector-json"]),
    "fluentd-out_stdout.log": (COLLECTED, COLLECTOR, ["fluentd-stdout"]),
    "fluentbit-stdout-msgpack.log": (COLLECTED, COLLECTOR, ["fluentbit-msgpack"]),
    "fluentbit-stdout-msgpack-pre2.1.log": (COLLECTED, COLLECTOR, ["fluentbit-msgpack"]),
    "fluentbit-json_lines.log": (PLAIN | BOTH, COLLECTOR, ["fluentbit-json"]),
    "istio-json-kubectl-plain.log": (JSON_LINES, (), []),
    "istio-json-cri-containerd.log": (JSON_LINES, (), ["cri"]),
    "fluentbit-json_lines-merge_log-istio-json.log": (JSON_LINES, COLLECTOR, ["fluentbit-json"]),
}


def unwrap(path: Path, *, chunk_bytes: int = 1 << 20, forced: str | None = None) -> tuple[pl.DataFrame, int, Unwrapper]:
    """The unwrapped lines frame of a file read in chunks, the file's physical line count, the unwrapper."""
    unwrapper, stats = Unwrapper(forced), SourceStats(str(path))
    frames = [unwrapper.feed(chunk) for chunk in read_lines(str(path), stats, chunk_bytes=chunk_bytes)]
    frames.append(unwrapper.flush())
    return pl.concat(frames, how="diagonal_relaxed"), stats.lines, unwrapper


def start_key(log: AccessLog) -> pl.Series:
    return log.requests["start_time"].dt.strftime("%H:%M:%S%.3f")


def access_rows(log: AccessLog, columns: list[str]) -> pl.DataFrame:
    return log.requests.select(columns).sort("start_time")


def reference(fmt: CompiledFormat) -> AccessLog:
    """The plain lines, parsed: what every wrapped form must give."""
    if fmt is JSON:
        lines = (SAMPLES / "istio-json-kubectl-plain.log").read_text().splitlines()
    else:
        lines = (SAMPLES / "kubectl-plain.log").read_text().splitlines() + HTTPBIN_LINES + [LONG_LINE]
    log = parse_lines(lines_frame(lines, source="plain"), fmt)
    assert log.counts.unparsed == 0
    return log


def test_every_sample_has_a_case() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.log")) == sorted(CASES)


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 700], ids=["whole", "700-byte-chunks"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_gives_the_plain_rows(name: str, chunk_bytes: int) -> None:
    starts, filled, detected = CASES[name]
    fmt = JSON if name.startswith(("istio-json", "fluentbit-json_lines-merge_log")) else TEXT
    lines, physical, unwrapper = unwrap(SAMPLES / name, chunk_bytes=chunk_bytes)
    log = parse_lines(lines, fmt)

    c = log.counts
    assert (c.total, c.unparsed) == (lines.height, 0)
    assert c.total == c.access + c.unparsed + c.other
    assert physical == c.total + unwrapper.joined
    assert unwrapper.detected == detected

    assert set(start_key(log)) == starts
    plain = reference(fmt)
    columns = [c for c in plain.requests.columns if c not in ("source", "line_no")]
    expected = plain.requests.filter(start_key(plain).is_in(sorted(starts)))
    assert_frame_equal(access_rows(log, columns), expected.select(columns).sort("start_time"))

    rows = log.requests.with_columns(start_key(log).alias("_start"))
    for column in ("pod", "namespace", "container"):
        if column not in filled:
            assert column not in rows.columns or rows[column].null_count() == rows.height
    for row in rows.iter_rows(named=True):
        if "pod" in filled:
            assert row["pod"] == POD_OF[row["_start"]]
            assert row["container"] == "istio-proxy"
        if "namespace" in filled:
            assert row["namespace"] == "default"
    if any(w not in ("kubectl-prefix", "stern", "collector-json") for w in detected):  # a wrapper with a time
        assert rows["captured_at"].null_count() == 0


@pytest.mark.parametrize(
    "name",
    [
        "cri-containerd.log",
        "cri-crio.log",
        "docker-json-file.log",
        "fluentd-out_file-cri-parser.log",
        "kubectl-timestamps-longline-split.log",
    ],
)
def test_the_long_line_comes_back_byte_exact(name: str) -> None:
    lines, _, unwrapper = unwrap(SAMPLES / name, chunk_bytes=512)
    long = lines.filter(pl.col("line").str.starts_with("[2024-06-28T06:41:20.000Z]"))
    assert long["line"].to_list() == [LONG_LINE]
    assert long["captured_at"].to_list() == [dt.datetime(2024, 6, 28, 6, 41, 21, 151, tzinfo=dt.UTC)]
    assert unwrapper.joined == (0 if name.startswith("kubectl") else 1)


def test_where_each_line_came_from() -> None:
    """The first sleep access line in every form: capture time and stream as each wrapper states them."""
    first = dt.datetime(2024, 6, 28, 6, 41, 11, 52231, tzinfo=dt.UTC)
    seen = {}
    for name in ("kubectl-prefix-timestamps.log", "cri-crio.log", "docker-json-file.log", "fluentbit-json_lines.log"):
        lines, _, _ = unwrap(SAMPLES / name)
        row = lines.filter(pl.col("line").str.starts_with("[2024-06-28T06:41:10.123Z]")).row(0, named=True)
        seen[name] = (row["captured_at"], row.get("stream"), row.get("pod"), row["line_no"])
    assert seen == {
        "kubectl-prefix-timestamps.log": (first, None, SLEEP, 17),
        "cri-crio.log": (first, "stdout", None, 17),
        "docker-json-file.log": (first, "stdout", None, 17),
        "fluentbit-json_lines.log": (first, "stdout", SLEEP, 5),
    }


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("fluentd-out_stdout.log", {"fluentd-log": 6, "istio-log": 3, "envoy-log": 1}),
        ("fluentbit-stdout-msgpack.log", {"fluentbit-log": 9, "blank": 1, "istio-log": 3, "envoy-log": 1}),
        (
            "kubectl-selector-all-containers-prefix.log",
            {"iptables": 12, "unrecognised": 3, "istio-log": 2, "envoy-log": 1},
        ),
    ],
)
def test_collector_and_init_lines_are_other_by_kind(name: str, kinds: dict[str, int]) -> None:
    lines, _, _ = unwrap(SAMPLES / name)
    other = parse_lines(lines, TEXT).other
    assert dict(other.group_by("kind").len().iter_rows()) == kinds


def test_stern_with_colours_and_namespaces() -> None:
    """stern on a terminal: ANSI colours around the names; ``--all-namespaces`` adds a column."""
    raw = (SAMPLES / "stern-default.log").read_text().splitlines()
    coloured = [
        re.sub(r"^(\S+) (\S+) ", "\x1b[32mdefault\x1b[0m \x1b[36m\\1\x1b[0m \x1b[33m\\2\x1b[0m ", ln) for ln in raw
    ]
    unwrapper = Unwrapper()
    lines = pl.concat([unwrapper.feed(lines_frame(coloured)), unwrapper.flush()], how="diagonal_relaxed")
    plain, _, _ = unwrap(SAMPLES / "stern-default.log")
    assert lines["line"].to_list() == plain["line"].to_list()
    assert set(lines["namespace"]) == {"default"}
    assert lines["pod"].to_list() == plain["pod"].to_list()


# --- peer data: wrapped files from other projects' test suites ---

WRAPPED_PEER_FILES = {
    "elastic-beats/envoy-json.log": 1,
    "elastic-integrations/envoyproxy-log/test-log.log": 7,
    "elastic-integrations/envoyproxy-log/envoy-logfile.log": 7,
    "elastic-integrations/istio-access_logs/test-access_container_logs.log": 15,
    "kiali/waypoint.log": 16,
    "istio-istio/istio-issue29109-kubectl-ts.log": 3,
}


def plain_form(line: str) -> str:
    """The test's own reading of each wrapper, one line at a time (independent of meshlog)."""
    if line.startswith("{"):
        line = json.loads(line)["message"].removesuffix("\n")
    line = re.sub(r"^\S+ (?:stdout|stderr) F ", "", line)  # CRI
    line = re.sub(r"^\d{4}-\d\d-\d\dT\S+Z (?=\[)", "", line)  # kubectl --timestamps
    return line.removeprefix("ACCESS ")


@pytest.mark.parametrize("name", sorted(WRAPPED_PEER_FILES))
def test_wrapped_peer_file_gives_the_rows_of_its_plain_lines(name: str) -> None:
    path = PEER_DATA / name
    plain_lines = [plain_form(ln) for ln in path.read_text().splitlines()]
    fmt = detect(plain_lines)
    plain = parse_lines(lines_frame(plain_lines), fmt)
    lines, physical, _ = unwrap(path)
    log = parse_lines(lines, fmt)
    assert (log.counts.total, log.counts.access, log.counts.unparsed) == (physical, WRAPPED_PEER_FILES[name], 0)
    columns = [c for c in plain.requests.columns if c not in ("source", "line_no")]
    assert_frame_equal(log.requests.select(columns), plain.requests.select(columns))


def test_ambassador_records_match_filebeat() -> None:
    """Filebeat's expected values for the docker-json / ``ACCESS`` lines, pod metadata included."""
    for name, expected_file, pick in (
        ("elastic-beats/envoy-json.log", "elastic-beats/envoy-json.log-expected.json", lambda d: d),
        (
            "elastic-integrations/envoyproxy-log/test-log.log",
            "elastic-integrations/envoyproxy-log/test-log.log-expected.json",
            lambda d: d["expected"],
        ),
    ):
        expected = pick(json.loads((PEER_DATA / expected_file).read_text()))
        lines, _, _ = unwrap(PEER_DATA / name)
        rows = parse_lines(lines, resolve("envoy")).requests.to_dicts()
        assert len(rows) == len(expected)
        for ours, theirs in zip(rows, expected, strict=True):
            assert ours["start_time"] == dt.datetime.fromisoformat(theirs["@timestamp"])
            duration = theirs.get("event.duration", theirs.get("event", {}).get("duration"))
            assert ours["duration"] * 1_000_000 == duration
            kube = theirs.get("kubernetes") or {
                "pod": {"name": theirs.get("kubernetes.pod.name")},
                "namespace": theirs.get("kubernetes.namespace"),
                "container": {"name": theirs.get("kubernetes.container.name")},
            }
            assert (ours["pod"], ours["namespace"], ours["container"]) == (
                kube["pod"]["name"],
                kube["namespace"],
                kube["container"]["name"],
            )
