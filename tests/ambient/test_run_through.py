"""What a new user's run-through found, each held: ztunnel lines copied from a terminal, --by pod and
--where across both kinds of record, a missing file beside a ztunnel log, a quiet node's log."""

from __future__ import annotations

import json
from pathlib import Path

from meshlog.cli import app
from tests.ambient.expect import MIXED, MIXED_LINES, TEXT, WAYPOINT, ZTUNNEL, field, parse_file, runner, summary


def test_a_terminal_copy_with_spaces_for_tabs_reads_the_same(tmp_path: Path) -> None:
    spaced = tmp_path / "spaces.log"
    spaced.write_text(TEXT.read_text().replace("\t", "  "))
    log = parse_file(spaced)
    assert log.connections["src_addr"].to_list() == [field(r, "src.addr") for r in ZTUNNEL]
    assert log.connections["error"].to_list() == [field(r, "error") for r in ZTUNNEL]
    assert log.counts.unparsed == 0


def test_by_pod_on_a_mixed_stream() -> None:
    by_pod = summary(MIXED, "--by", "pod")
    assert by_pod["requests"] == len(WAYPOINT)
    assert [r["pod"] for r in by_pod["latency"]["by_pod"]] == ["waypoint-7d9f8b6c4-xk2lp"]


def test_where_across_both_kinds_keeps_each() -> None:
    chosen = summary(MIXED, "--where", "dst_service~reviews or response_code>=500")
    in_mixed = {m["index"] for m in MIXED_LINES if m["kind"] == "ztunnel"}
    reviews = [r for i, r in enumerate(ZTUNNEL) if i in in_mixed and "reviews" in (field(r, "dst.service") or "")]
    ended = [r for r in reviews if r["message"] != "connection opened"]
    assert chosen["requests"] == sum(1 for w in WAYPOINT if (w["response_code"] or 0) >= 500)
    assert chosen["connections"]["total"] == len(ended) > 0


def test_a_missing_file_beside_a_ztunnel_log_still_gets_the_report(tmp_path: Path) -> None:
    result = runner.invoke(app, ["summarize", str(tmp_path / "nope.log"), str(TEXT), "-o", "json"])
    assert result.exit_code == 3
    assert json.loads(result.stdout)["connections"]["records"] == len(ZTUNNEL)
    assert "nope.log: no such file" in result.stderr


def test_a_quiet_nodes_log_is_other_lines_not_an_error(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_text("".join(line + "\n" for line in TEXT.read_text().splitlines() if "\taccess\t" not in line))
    result = runner.invoke(app, ["summarize", str(quiet), "-o", "json"])
    assert result.exit_code == 0, result.stderr
    lines = json.loads(result.stdout)["lines"]
    assert lines["access"] == 0 and lines["other"] == lines["total"] > 0
    kinds = {o["kind"] for o in json.loads(result.stdout)["other_lines"]}
    assert "ztunnel-log" in kinds


def test_plain_parse_says_where_the_connections_went() -> None:
    result = runner.invoke(app, ["parse", str(TEXT), "-o", "ndjson"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"note: {len(ZTUNNEL)} ztunnel records (Istio ambient) not in these rows: use --records connections" in (
        result.stderr
    )
