"""Collector records → lines frames: which key is the line, P/F joining, where pod/namespace/container come from."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl

from meshlog.formats.presets import resolve
from meshlog.forward.protocol import Event, EventTime
from meshlog.forward.records import LINES_SCHEMA, LineAssembler, record_message
from meshlog.parse import lines_frame, parse_lines
from tests.forward.support import K8S_TAG, SAMPLES


def ev(record: dict[str, object], tag: str = "t", seconds: int = 1719556871, nanos: int = 0) -> Event:
    return Event(tag, EventTime(seconds, nanos), record)


def test_message_key_precedence_and_one_trailing_newline() -> None:
    events = [
        ev({"log": "a\n\n", "message": "not this"}),
        ev({"message": "b\n", "MESSAGE": "not this"}),
        ev({"MESSAGE": "c", "msg": "not this"}),
        ev({"log": None, "message": "d"}),
        ev({"log": b"e\n"}),
        ev({"log": 42}),
        ev({"log": "f\r\n"}),
    ]
    lines = LineAssembler().lines(events)
    assert lines["line"].to_list() == ["a\n", "b", "c", "d", "e", "42", "f\r"]


def test_record_without_message_is_its_json_minus_collector_keys() -> None:
    record = {
        "date": 1.5,
        "time": "x",
        "stream": "stdout",
        "_p": "F",
        "logtag": "F",
        "tag": "t",
        "kubernetes": {"pod_name": "p"},
        "docker": {},
        "response_code": 200,
        "path": "/é",
        "x": None,
    }
    assert record_message(record) == ('{"response_code":200,"path":"/é","x":null}', False)


def test_merge_log_records_give_the_rows_of_the_plain_json_log() -> None:
    """fluent-bit `Merge_Log On, Keep_Log Off`: the access keys sit in the record itself."""
    records = [json.loads(line) for line in (SAMPLES / "fluentbit-json_lines-merge_log-istio-json.log").open()]
    lines = LineAssembler().lines(ev(r, K8S_TAG) for r in records)
    merged = parse_lines(lines, resolve("istio-json"))
    plain_lines = (SAMPLES / "istio-json-kubectl-plain.log").read_text().splitlines()
    plain = parse_lines(lines_frame(plain_lines), resolve("istio-json"))
    assert merged.counts == plain.counts and merged.counts.access == 3
    columns = [c for c in plain.requests.columns if c not in ("source", "line_no")]
    assert merged.requests.select(columns).equals(plain.requests.select(columns))
    assert merged.requests["response_code"].to_list() == [418, 503, 0]  # README: 418, 503 UF,URX, TCP
    assert merged.requests["response_flags"].to_list() == [None, "UF,URX", None]
    assert merged.requests["pod"].unique().to_list() == ["sleep-7656cf8794-7hkmv"]


def test_fluentd_cri_parser_partial_chunks_are_joined() -> None:
    """fluent-plugin-parser-cri leaves a 16 KiB `P` chunk and its `F` rest as two records."""
    rows = [line.rstrip("\n").split("\t", 2) for line in (SAMPLES / "fluentd-out_file-cri-parser.log").open()]
    records = [(tag, json.loads(body)) for _, tag, body in rows]
    (p_at,) = [i for i, (_, r) in enumerate(records) if r["logtag"] == "P"]
    expected_long = records[p_at][1]["message"] + records[p_at + 1][1]["message"]
    assembler = LineAssembler()
    frames = [  # the P chunk and its F rest in different batches
        assembler.lines(ev(r, tag) for tag, r in records[: p_at + 1]),
        assembler.lines(ev(r, tag) for tag, r in records[p_at + 1 :]),
    ]
    lines = pl.concat(frames)
    assert lines.height == len(records) - 1 and assembler.open_partials == 0
    for _, per_source in lines.group_by("source", maintain_order=True):  # three pods, numbered each from 1
        assert per_source["line_no"].to_list() == list(range(1, per_source.height + 1))
    assert lines["pod"].unique().sort().to_list() == [
        "httpbin-74fb669cc6-jzs87",
        "httpbin-74fb669cc6-x2p4q",
        "sleep-7656cf8794-7hkmv",
    ]
    long = lines.filter(pl.col("line").str.len_bytes() > 16384)
    assert long["line"].to_list() == [expected_long] and len(expected_long.encode()) == 17090
    log = parse_lines(lines, resolve("istio"))
    assert log.counts.unparsed == 0
    assert log.requests.filter(pl.col("path").str.starts_with("/anything?q=aaaa")).height == 1


def test_partials_join_per_tag_and_stream() -> None:
    assembler = LineAssembler()
    first = assembler.lines(
        [
            ev({"log": "out-1 ", "stream": "stdout", "_p": "P"}, nanos=1000),
            ev({"log": "err whole", "stream": "stderr", "_p": "F"}, nanos=2000),
            ev({"log": "other tag", "stream": "stdout", "_p": "F"}, tag="u"),
            ev({"log": "out-2 ", "stream": "stdout", "_p": "P"}, nanos=3000),
        ]
    )
    assert first["line"].to_list() == ["err whole", "other tag"] and assembler.open_partials == 1
    second = assembler.lines([ev({"log": "end\n", "stream": "stdout", "logtag": "F"}, nanos=4000)])
    assert second["line"].to_list() == ["out-1 out-2 end"]
    assert second["captured_at"].to_list() == [datetime(2024, 6, 28, 6, 41, 11, 1, tzinfo=UTC)]  # the first chunk's
    assert second["line_no"].to_list() == [2]  # after "err whole" on the same source


def test_a_p_p_f_chain_split_across_batches_is_one_line() -> None:
    """P | P F: the held chain is joined with the rest of it in the next batch, around other streams."""
    assembler = LineAssembler()
    first = assembler.lines([ev({"log": "a-", "_p": "P"}, nanos=1000)])
    assert first.height == 0 and assembler.open_partials == 1
    second = assembler.lines(
        [
            ev({"log": "b-", "_p": "P"}, nanos=2000),
            ev({"log": "whole", "stream": "stderr", "_p": "F"}, nanos=3000),
            ev({"log": "c\n", "_p": "F"}, nanos=4000),
            ev({"log": "next\n", "_p": "F"}, nanos=5000),
        ]
    )
    assert sorted(second["line"].to_list()) == ["a-b-c", "next", "whole"] and assembler.open_partials == 0
    assert second.filter(pl.col("line") == "a-b-c")["captured_at"].to_list() == [
        datetime(2024, 6, 28, 6, 41, 11, 1, tzinfo=UTC)
    ]
    assert sorted(second["line_no"].to_list()) == [1, 2, 3] and assembler.flush().height == 0


def test_open_partials_are_flushed_not_lost() -> None:
    assembler = LineAssembler()
    assert assembler.lines([ev({"log": "half", "_p": "P"})]).height == 0
    assert assembler.flush()["line"].to_list() == ["half"]
    assert assembler.open_partials == 0 and assembler.flush().height == 0


def test_a_partial_chain_is_cut_at_the_limit() -> None:
    assembler = LineAssembler(max_partial_bytes=10)
    lines = assembler.lines([ev({"log": "123456", "_p": "P"}) for _ in range(3)])
    assert lines["line"].to_list() == ["123456123456"] and assembler.cut_partials == 1
    assert assembler.flush()["line"].to_list() == ["123456"]
    later = LineAssembler(max_partial_bytes=10)  # a chain cut across batches, then a chain of its own
    assert later.lines([ev({"log": "123456", "_p": "P"})]).height == 0
    assert later.lines([ev({"log": "78901", "_p": "P"}), ev({"log": "x", "_p": "P"})])["line"].to_list() == [
        "12345678901"
    ]
    assert later.cut_partials == 1 and later.lines([ev({"log": "y", "_p": "F"})])["line"].to_list() == ["xy"]


def test_pod_namespace_container_from_kubernetes_then_tag() -> None:
    tag_only = "kube.var.log.containers.web.v2-5d9f_shop_istio-proxy-" + "ab" * 32 + ".log"
    fluentd_tag = "kubernetes.var.log.containers.httpbin-74fb669cc6-jzs87_default_istio-proxy-" + "0f" * 32 + ".log"
    lines = LineAssembler().lines(
        [
            ev({"log": "a", "kubernetes": {"pod_name": "p", "namespace_name": "n", "container_name": "c"}}, K8S_TAG),
            ev({"log": "b"}, K8S_TAG),
            ev({"log": "c"}, tag_only),
            ev({"log": "d"}, fluentd_tag),
            ev({"log": "e"}, "kube.var.log.containers.sleep-7656cf8794-7hkmv_default_istio-proxy-abc.log"),
            ev({"log": "f"}, "app.logs"),
        ]
    )
    got = lines.select("pod", "namespace", "container").rows()
    assert got == [
        ("p", "n", "c"),
        ("sleep-7656cf8794-7hkmv", "default", "istio-proxy"),
        ("web.v2-5d9f", "shop", "istio-proxy"),
        ("httpbin-74fb669cc6-jzs87", "default", "istio-proxy"),
        (None, None, None),  # no 64-hex container id: not a kubelet symlink name
        (None, None, None),
    ]


def test_frame_schema_sources_and_line_numbers() -> None:
    assembler = LineAssembler()
    a = assembler.lines([ev({"log": "1"}, "a"), ev({"log": "1"}, "b"), ev({"log": "2", "stream": "stderr"}, "a")])
    b = assembler.lines([ev({"log": "2"}, "b"), ev({"log": "3"}, "a")])
    assert a.schema == b.schema == pl.Schema(LINES_SCHEMA)
    assert pl.concat([a, b]).select("source", "line_no", "line").rows() == [
        ("forward:a", 1, "1"),
        ("forward:b", 1, "1"),
        ("forward:a", 2, "2"),
        ("forward:b", 2, "2"),
        ("forward:a", 3, "3"),
    ]
    assert a["stream"].to_list() == [None, None, "stderr"]
    assert assembler.lines([]).schema == pl.Schema(LINES_SCHEMA)


def test_captured_at_keeps_microseconds() -> None:
    (t,) = LineAssembler().lines([ev({"log": "x"}, seconds=1719556871, nanos=52231830)])["captured_at"]
    assert t == datetime(2024, 6, 28, 6, 41, 11, 52231, tzinfo=UTC)
