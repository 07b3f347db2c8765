"""Unwrapper, case by case: exact values for each wrapper, joins across chunks, mixed and forced input."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import polars as pl
import pytest

from meshlog import envelopes
from meshlog.envelopes import Unwrapper
from meshlog.errors import ConfigError
from meshlog.parse import lines_frame

ACCESS = (
    '[2024-06-28T06:41:10.123Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" "curl/8.8.0" '
    '"84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.244.1.27:8080" '
    "outbound|8000||httpbin.default.svc.cluster.local 10.244.1.23:37652 10.96.45.184:8000 10.244.1.23:46520 - default"
)
PILOT = "2024-06-28T06:40:09.967215Z\tinfo\tEnvoy proxy is ready"
TAG = "kubernetes.var.log.containers.sleep-7656cf8794-7hkmv_default_istio-proxy-" + "ab" * 32 + ".log"


def at(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)


def frame(lines: list[str], first: int = 1, **columns: list[str | None]) -> pl.DataFrame:
    df = lines_frame(lines, source="s", first_line_no=first)
    return df.with_columns(pl.Series(k, v, dtype=pl.String) for k, v in columns.items())


def run(lines: list[str], forced: str | None = None) -> tuple[pl.DataFrame, Unwrapper]:
    unwrapper = Unwrapper(forced)
    return pl.concat([unwrapper.feed(frame(lines)), unwrapper.flush()], how="diagonal_relaxed"), unwrapper


def test_plain_lines_pass_unchanged() -> None:
    lines = [PILOT, "", ACCESS, "error: container istio-proxy is terminated", '{"level":"info","msg":"x"}']
    out, unwrapper = run(lines)
    assert out.columns == ["source", "line_no", "line"]
    assert out["line"].to_list() == lines
    assert out["line_no"].to_list() == [1, 2, 3, 4, 5]
    assert (unwrapper.detected, unwrapper.joined) == ([], 0)


def test_kubectl_prefix_and_timestamps() -> None:
    out, unwrapper = run(
        [
            f"[pod/sleep-7656cf8794-7hkmv/istio-proxy] 2024-06-28T06:41:11.052231830Z {ACCESS}",
            "[pod/sleep-7656cf8794-7hkmv/istio-proxy] 2024-06-28T06:41:11.052240100+02:00 ",
            "error: container istio-proxy is terminated",
        ]
    )
    assert out.columns == ["source", "line_no", "captured_at", "pod", "container", "line"]
    assert out.row(0) == ("s", 1, at(2024, 6, 28, 6, 41, 11, 52231), "sleep-7656cf8794-7hkmv", "istio-proxy", ACCESS)
    assert out.row(1)[2:] == (at(2024, 6, 28, 4, 41, 11, 52240), "sleep-7656cf8794-7hkmv", "istio-proxy", "")
    assert out.row(2)[2:] == (None, None, None, "error: container istio-proxy is terminated")
    assert unwrapper.detected == ["kubectl-prefix", "kubectl-timestamps"]


def test_timestamps_split_defect_is_cut_at_every_16k() -> None:
    """kubernetes#77603: a timestamp before every 16 KiB chunk of one line."""
    content = ACCESS.replace("/status/418", "/x?q=" + "é" * 20000)  # multi-byte: offsets are in bytes
    if content.encode()[16384] & 0xC0 == 0x80:  # keep the cuts between characters, as the test writes
        content = content.replace("/x?", "/xy?")
    raw = content.encode()
    stamps = [b"2024-06-28T06:41:21.000151234Z ", b"2024-06-28T06:41:21.000153321Z ", b"2024-06-28T06:41:21.1Z "]
    physical = stamps[0] + raw[:16384] + stamps[1] + raw[16384:32768] + stamps[1] + raw[32768:]
    out, _ = run([physical.decode(), f"2024-06-28T06:41:22.000000000Z {ACCESS}"])
    assert out["line"].to_list() == [content, ACCESS]
    assert out["captured_at"].to_list() == [at(2024, 6, 28, 6, 41, 21, 151), at(2024, 6, 28, 6, 41, 22)]
    # a timestamp-looking text elsewhere in a long line is content, not a chunk boundary
    other = "a" * 20000 + " 2024-06-28T06:41:21.000151234Z b"
    out, _ = run([f"2024-06-28T06:41:21.000151234Z {other}"])
    assert out["line"].to_list() == [other]


def test_cri_partial_chunks_are_joined_across_feeds() -> None:
    unwrapper = Unwrapper()
    first = unwrapper.feed(
        frame(
            [
                "2024-06-28T06:41:21.000151234Z stdout P [2024-06-28T06:41:20.000Z] part one,",
                "2024-06-28T06:41:21.0002Z stderr F " + PILOT,
                "2024-06-28T06:41:21.0003Z stdout P  part two,",
            ]
        )
    )
    assert first.select("line_no", "stream", "line").rows() == [(2, "stderr", PILOT)]
    assert unwrapper.joined == 0
    second = unwrapper.feed(
        frame(["2024-06-28T06:41:21.000153321Z stdout F  the end", "2024-06-28T06:41:22Z stdout F x"], 4)
    )
    assert second.select("line_no", "captured_at", "stream", "line").rows() == [
        (1, at(2024, 6, 28, 6, 41, 21, 151), "stdout", "[2024-06-28T06:41:20.000Z] part one, part two, the end"),
        (5, at(2024, 6, 28, 6, 41, 22), "stdout", "x"),
    ]
    assert unwrapper.joined == 2
    assert unwrapper.flush().height == 0
    assert unwrapper.detected == ["cri"]


def test_a_record_joined_twice_over_is_held_back_whole() -> None:
    """A Fluent Bit ``_p: P`` record cut by CRI into P + F: joined by CRI, then waiting for the next record.

    What is held back for the next feed must be both CRI lines, not only the first.
    """
    head = '{"date": 1719556871.05, "_p": "P", "log": "hello "}'
    tail = '{"date": 1719556871.06, "_p": "F", "log": "world"}'
    ts = "2024-06-28T06:41:11.05223183Z"
    unwrapper = Unwrapper()
    first = unwrapper.feed(frame([f"{ts} stdout P {head[:15]}", f"{ts} stdout F {head[15:]}"]))
    assert first.height == 0
    second = unwrapper.feed(frame([f"{ts} stdout F {tail}"], 3))
    assert second.select("line_no", "stream", "line").rows() == [(1, "stdout", "hello world")]
    assert (unwrapper.joined, unwrapper.flush().height) == (2, 0)


def test_a_partial_at_eof_comes_out_at_flush() -> None:
    unwrapper = Unwrapper()
    out = unwrapper.feed(frame(["2024-06-28T06:41:21Z stdout F a", "2024-06-28T06:41:22Z stdout P no newline at EOF"]))
    assert out["line"].to_list() == ["a"]
    rest = unwrapper.flush()
    assert rest.select("line_no", "line").rows() == [(2, "no newline at EOF")]
    assert rest.columns == out.columns
    assert unwrapper.flush().height == 0


def test_a_partial_that_never_ends_is_not_held_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelopes, "HOLD_ROWS", 3)
    unwrapper = Unwrapper()
    lines = ["2024-06-28T06:41:21Z stderr P stuck"] + [f"2024-06-28T06:41:22Z stdout F {i}" for i in range(5)]
    out = unwrapper.feed(frame(lines))
    assert out["line"].to_list() == ["stuck", "0", "1", "2", "3", "4"]


def test_cri_empty_line_and_crio_offsets() -> None:
    out, _ = run(
        [
            "2024-06-28T06:40:07.304301001+00:00 stdout F ",
            "2024-06-28T08:40:07.3Z stdout F",
            "2024-06-28T06:40:07Z stdout F:x y",
        ]
    )
    assert out.select("captured_at", "line").rows() == [
        (at(2024, 6, 28, 6, 40, 7, 304301), ""),
        (at(2024, 6, 28, 8, 40, 7, 300000), ""),
        (at(2024, 6, 28, 6, 40, 7), "y"),
    ]


def test_docker_chunks_without_newline_are_joined() -> None:
    def docker(log: str, time: str = "2024-06-28T06:41:21.000151234Z", stream: str = "stdout") -> str:
        return json.dumps({"log": log, "stream": stream, "time": time}, separators=(",", ":"))

    unwrapper = Unwrapper()
    a = unwrapper.feed(
        frame([docker('[2024-06-28T06:41:20.000Z] "GET /a?x=1&y=2'), docker("\tz\r\n", stream="stderr")])
    )
    b = unwrapper.feed(frame([docker(' HTTP/1.1" 414\n', "2024-06-28T06:41:21.9Z"), docker("\n")], 3))
    assert a.select("line_no", "stream", "line").rows() == [(2, "stderr", "\tz")]
    assert b.select("line_no", "captured_at", "stream", "line").rows() == [
        (1, at(2024, 6, 28, 6, 41, 21, 151), "stdout", '[2024-06-28T06:41:20.000Z] "GET /a?x=1&y=2 HTTP/1.1" 414'),
        (4, at(2024, 6, 28, 6, 41, 21, 151), "stdout", ""),
    ]
    assert (unwrapper.joined, unwrapper.detected) == (1, ["docker"])


def test_forced_input() -> None:
    cri = "2024-06-28T06:41:21Z stdout F " + ACCESS
    prefixed = "[pod/p-1/istio-proxy] " + ACCESS
    assert run([cri, prefixed], "plain")[0]["line"].to_list() == [cri, prefixed]
    assert run([cri, prefixed], "cri")[0]["line"].to_list() == [ACCESS, prefixed]
    assert run([cri, prefixed], "kubectl")[0]["line"].to_list() == [cri, ACCESS]
    record = json.dumps({"log": ACCESS + "\n", "stream": "stdout", "kubernetes": {"pod_name": "p-1"}})
    assert run([record, cri], "fluentd")[0]["line"].to_list() == [ACCESS, cri]
    assert run([record], "docker")[0]["line"].to_list() == [record]
    with pytest.raises(ConfigError, match="--input must be one of"):
        Unwrapper("syslog")


def test_input_columns_win_and_extra_columns_are_kept() -> None:
    """pod/container from a file path stay; the wrapper fills only what the path left null."""
    unwrapper = Unwrapper()
    lines = [f"[pod/from-prefix/istio-proxy] {ACCESS}", f"[pod/from-prefix/istio-proxy] {PILOT}"]
    out = unwrapper.feed(frame(lines, pod=["from-path", None], kind=["a", "b"]))
    assert out.columns == ["source", "line_no", "pod", "kind", "container", "line"]
    assert out.select("pod", "kind", "container").rows() == [
        ("from-path", "a", "istio-proxy"),
        ("from-prefix", "b", "istio-proxy"),
    ]


def test_wrapper_columns_stay_once_given() -> None:
    unwrapper = Unwrapper()
    first = unwrapper.feed(frame(["2024-06-28T06:41:21Z stdout F a"]))
    second = unwrapper.feed(frame(["plain again"], 2))
    assert first.columns == second.columns == ["source", "line_no", "captured_at", "stream", "line"]
    assert second.row(0) == ("s", 2, None, None, "plain again")


def test_stern_needs_a_constant_container_and_strips_colours() -> None:
    out, unwrapper = run(
        [
            "\x1b[32mhttpbin-74fb669cc6-jzs87\x1b[0m \x1b[33mistio-proxy\x1b[0m " + ACCESS,
            "httpbin-74fb669cc6-x2p4q istio-proxy " + PILOT,
        ]
    )
    assert out.select("pod", "container", "line").rows() == [
        ("httpbin-74fb669cc6-jzs87", "istio-proxy", ACCESS),
        ("httpbin-74fb669cc6-x2p4q", "istio-proxy", PILOT),
    ]
    assert unwrapper.detected == ["stern"]
    prose = ["the quick brown fox", "a lazy dog sleeps", "one more line here", "and the last one"]
    assert run(prose)[0]["line"].to_list() == prose


def test_collector_records_kubernetes_map_or_tag() -> None:
    with_map = json.dumps(
        {
            "log": ACCESS + "\n",
            "stream": "stdout",
            "docker": {"container_id": "ab" * 32},
            "kubernetes": {"container_name": "istio-proxy", "namespace_name": "default", "pod_name": "sleep-1"},
        },
        separators=(",", ":"),
    )
    cri_parser = json.dumps({"stream": "stderr", "logtag": "F", "message": PILOT, "time": "2024-06-28T06:40:08.20553Z"})
    out, unwrapper = run(
        [f"2024-06-28T06:40:08+00:00\t{TAG}\t{with_map}", f"2024-06-28T06:40:09+00:00\t{TAG}\t{cri_parser}"]
    )
    assert out.select("captured_at", "pod", "namespace", "container", "stream", "line").rows() == [
        (at(2024, 6, 28, 6, 40, 8), "sleep-1", "default", "istio-proxy", "stdout", ACCESS),
        (at(2024, 6, 28, 6, 40, 8, 205530), "sleep-7656cf8794-7hkmv", "default", "istio-proxy", "stderr", PILOT),
    ]
    assert unwrapper.detected == ["fluentd-out_file"]


def test_fluentd_stdout_between_its_own_log() -> None:
    lines = [
        "2024-06-28 06:41:00 +0000 [info]: #0 fluentd worker is now running worker=0",
        f"2024-06-28 06:41:11.052231830 +0000 {TAG}: " + json.dumps({"log": PILOT + "\n", "stream": "stdout"}),
    ]
    out, unwrapper = run(lines)
    assert out.select("captured_at", "pod", "line").rows() == [
        (None, None, lines[0]),
        (at(2024, 6, 28, 6, 41, 11, 52231), "sleep-7656cf8794-7hkmv", PILOT),
    ]
    assert unwrapper.detected == ["fluentd-stdout"]


def test_a_cri_line_inside_log_is_unwrapped_too() -> None:
    """A misconfigured collector keeps the CRI wrapper inside ``log``: the per-line rules run once more."""
    records = [
        {
            "log": "2024-06-28T06:41:21.000151234Z stdout P [2024-06-28T06:41:20.000Z] one,",
            "kubernetes": {"pod_name": "a"},
        },
        {"log": "2024-06-28T06:41:21.5Z stdout F  two", "kubernetes": {"pod_name": "a"}},
        {"log": '{"log":"x\\n","stream":"stderr","time":"2024-06-28T06:41:23Z"}\n', "kubernetes": {"pod_name": "b"}},
    ]
    out, unwrapper = run([json.dumps(r) for r in records])
    assert out.select("line_no", "captured_at", "pod", "stream", "line").rows() == [
        (1, at(2024, 6, 28, 6, 41, 21, 151), "a", "stdout", "[2024-06-28T06:41:20.000Z] one, two"),
        (3, at(2024, 6, 28, 6, 41, 23), "b", "stderr", "x"),
    ]
    assert (unwrapper.detected, unwrapper.joined) == (["collector-json", "cri", "docker"], 1)


def test_merge_log_record_becomes_the_access_json() -> None:
    access = '{"start_time":"2024-06-28T06:41:10.123Z","response_code":418,"path":"/a?b={}","user_agent":"x \\"y\\""}'
    record = (
        '{"date":1719556871.052232,"time":"2024-06-28T06:41:11.05223183Z","stream":"stdout","_p":"F",'
        + access[1:-1]
        + ',"kubernetes":{"pod_name":"sleep-1","labels":{"app":"sleep","a.b/c":"{"},'
        '"annotations":{"x":"{\\"k\\":[1]}"}}}'
    )
    out, unwrapper = run([record])
    assert out["line"].to_list() == [access]
    assert out.select("captured_at", "pod", "stream").row(0) == (at(2024, 6, 28, 6, 41, 11, 52231), "sleep-1", "stdout")
    assert unwrapper.detected == ["fluentbit-json"]


def test_fluentbit_json_lines_partial_records_and_date() -> None:
    def record(p: str, log: str, date: float) -> str:
        return json.dumps({"date": date, "stream": "stdout", "_p": p, "log": log, "kubernetes": {"pod_name": "s-1"}})

    out, unwrapper = run(
        [record("P", "[2024-06-28T06:41:20.000Z] a", 1719556881.000151), record("F", "b", 1719556881.1)]
    )
    assert out.select("line_no", "captured_at", "line").rows() == [
        (1, at(2024, 6, 28, 6, 41, 21, 151), "[2024-06-28T06:41:20.000Z] ab")
    ]
    assert (unwrapper.detected, unwrapper.joined) == (["fluentbit-json"], 1)


def test_fluentbit_msgpack_records_split_by_raw_newlines_across_feeds() -> None:
    head = "[0] kube.var.log.containers.sleep-1_default_istio-proxy-" + "cd" * 32 + ".log: [1719556871.052231830, "
    unwrapper = Unwrapper()
    a = unwrapper.feed(frame(["[2024/06/28 06:40:58] [ info] [fluent bit] version=1.9.3", head + '{"log"=>"' + ACCESS]))
    b = unwrapper.feed(
        frame(['", "stream"=>"stdout", "time"=>"2024-06-28T06:41:11.05223183Z"}]', "Fluent Bit v1.9.3"], 3)
    )
    assert a["line"].to_list() == ["[2024/06/28 06:40:58] [ info] [fluent bit] version=1.9.3"]
    assert b.select("line_no", "captured_at", "pod", "container", "stream", "line").rows() == [
        (2, at(2024, 6, 28, 6, 41, 11, 52231), "sleep-1", "istio-proxy", "stdout", ACCESS),
        (4, None, None, None, None, "Fluent Bit v1.9.3"),
    ]
    assert (unwrapper.detected, unwrapper.joined) == (["fluentbit-msgpack"], 1)


def test_fluentbit_msgpack_v2_raw_quotes_in_the_line() -> None:
    line = (
        '[3] kube.x: [[1719556871.052231830, {}], {"time"=>"2024-06-28T06:41:11.05223183Z", "stream"=>"stderr", '
        f'"_p"=>"F", "log"=>"{ACCESS}", "kubernetes"=>{{"pod_name"=>"p-1", "namespace_name"=>"ns", '
        '"annotations"=>{"s"=>"{"containers":["istio-proxy"]}"}, "container_name"=>"istio-proxy"}}]'
    )
    out, _ = run([line])
    assert out.select("pod", "namespace", "container", "stream", "line").row(0) == (
        "p-1",
        "ns",
        "istio-proxy",
        "stderr",
        ACCESS,
    )


def test_beats_record_and_access_prefix() -> None:
    record = (
        '{"message":"ACCESS [2019-02-12T18:37:42.921Z] \\"GET /ip HTTP/1.1\\" 200 - 0 43 217 216\\n",'
        '"stream":"stdout","time":"2019-02-12T18:37:43.139620629Z", "kubernetes": { "container": { "name": "amb" }, '
        '"pod": { "name": "amb-1" }, "namespace": "default" }}'
    )
    out, unwrapper = run([record, 'ACCESS [2019-02-12T18:37:42.921Z] "GET /ip HTTP/1.1"'])
    assert out.select("captured_at", "pod", "namespace", "container", "line").rows() == [
        (
            at(2019, 2, 12, 18, 37, 43, 139620),
            "amb-1",
            "default",
            "amb",
            '[2019-02-12T18:37:42.921Z] "GET /ip HTTP/1.1" 200 - 0 43 217 216',
        ),
        (None, None, None, None, '[2019-02-12T18:37:42.921Z] "GET /ip HTTP/1.1"'),
    ]
    assert unwrapper.detected == ["collector-json", "access-prefix"]


def test_mixed_wrappers_in_one_stream() -> None:
    lines = [
        "2024-06-28T06:41:21Z stdout F " + ACCESS,
        json.dumps({"log": ACCESS + "\n", "stream": "stderr", "time": "2024-06-28T06:41:22Z"}, separators=(",", ":")),
        "2024-06-28T06:41:23.000000000Z " + ACCESS,
        ACCESS,
        "2024-06-28 06:41:00 +0000 [info]: #0 fluentd worker is now running worker=0",
        json.dumps({"log": ACCESS, "_p": "F", "kubernetes": {"pod_name": "p-2", "namespace_name": "n"}}),
        '{"start_time":"2024-06-28T06:41:10.123Z","response_code":418}',  # Istio JSON access log: not a record
        "not json {",
    ]
    out, unwrapper = run(lines)
    assert out.select("stream", "pod", "line").rows() == [
        ("stdout", None, ACCESS),
        ("stderr", None, ACCESS),
        (None, None, ACCESS),
        (None, None, ACCESS),
        (None, None, lines[4]),
        (None, "p-2", ACCESS),
        (None, None, lines[6]),
        (None, None, lines[7]),
    ]
    assert out["captured_at"].to_list()[:4] == [
        at(2024, 6, 28, 6, 41, 21),
        at(2024, 6, 28, 6, 41, 22),
        at(2024, 6, 28, 6, 41, 23),
        None,
    ]
    assert unwrapper.detected == ["kubectl-timestamps", "cri", "docker", "fluentbit-json"]


def test_broken_json_records_pass_through() -> None:
    lines = [
        '{"log":"half a rec',
        '{"log":"x","stream":"stdout","kubernetes":{"pod_name":1}',
        '{"log": "a", "stream": 3}',
    ]
    out, _ = run(lines)
    assert out.height == 3
    assert out["line"].to_list()[:2] == lines[:2]


def test_empty_feed_and_flush() -> None:
    unwrapper = Unwrapper()
    assert unwrapper.flush().columns == ["source", "line_no", "line"]
    out = unwrapper.feed(frame([]))
    assert (out.height, out.columns) == (0, ["source", "line_no", "line"])


def test_a_broken_fluentbit_record_does_not_swallow_the_lines_after_it() -> None:
    lines = ["[0] kube.x: [1719556871.052231830, {", "2024-06-28T06:40:09.96724Z stdout F " + PILOT, ACCESS]
    out, unwrapper = run(lines)  # the open record waited for EOF (it might have closed), then came out as it was
    assert out.sort("line_no")["line"].to_list() == [lines[0], PILOT, ACCESS]
    assert unwrapper.joined == 0


def test_a_partial_goes_on_only_in_the_same_wrapper() -> None:
    """A CRI ``P`` is not continued by a docker record of the same stream (mixed files)."""
    docker = json.dumps({"log": "next\n", "stream": "stdout", "time": "2024-06-28T06:41:13Z"}, separators=(",", ":"))
    out, unwrapper = run(["2024-06-28T06:41:12Z stdout P cut short", docker])
    assert out.select("line_no", "line").rows() == [(2, "next"), (1, "cut short")]  # the P waited for EOF
    assert unwrapper.joined == 0


def test_every_scratch_column_is_written_down() -> None:
    """The layers' ``_e_*`` columns are a protocol: each one used is in ``SCRATCH``, each there is used."""
    source = Path(envelopes.__file__).read_text()
    table = source[source.index("SCRATCH: dict") : source.index("\n}\n", source.index("SCRATCH: dict"))]
    code = source.replace(table, "")
    families = [k.removesuffix("*") for k in envelopes.SCRATCH if k.endswith("*")]
    used = set(re.findall(r"_e_[a-z_]*[a-z]", code))
    prefixes = set(re.findall(r"(_e_[a-z_]*)\{", code))  # f"_e_d{k}": a family
    undocumented = {
        name
        for name in used - prefixes
        if name not in envelopes.SCRATCH and not any(name.startswith(f) for f in families)
    }
    assert not undocumented
    assert all(any(k.startswith(p) for k in envelopes.SCRATCH) for p in prefixes)
    unused = [k for k in envelopes.SCRATCH if not k.endswith("*") and k not in used and k not in envelopes._W.values()]
    assert not unused
