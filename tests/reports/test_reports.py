"""Reports on the real-Envoy fixture, checked against what the traffic generator configured."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import polars as pl
import pytest

from meshlog.errors import FilterError
from meshlog.filters import compile_where, narrow
from meshlog.formats.presets import resolve
from meshlog.parse import OTHER_SCHEMA, UNPARSED_SCHEMA, AccessLog, parse_lines
from meshlog.parse.tally import Tally
from meshlog.reports import failures
from meshlog.reports.hints import hints
from meshlog.reports.retries import retries_report
from meshlog.reports.state import state_of
from meshlog.reports.summary import by_table, summarize_log, summary_dict
from meshlog.reports.timeline import bucket_seconds
from meshlog.sources import read_lines
from tests.conftest import FIXTURES, failed

ISTIO = FIXTURES / "envoy" / "istio"
CUSTOM = FIXTURES / "envoy" / "custom"


def load(folder: Any, preset: str | None = None) -> tuple[AccessLog, list[dict[str, Any]]]:
    from meshlog.formats.compiler import compile_format

    fmt = resolve(preset) if preset else compile_format((folder / "format.txt").read_text())
    log = AccessLog.concat([parse_lines(f, fmt) for f in read_lines(str(folder / "access.log"))], fmt)
    return log, [json.loads(x) for x in (folder / "expected.jsonl").read_text().splitlines()]


def test_hints_name_each_configured_failure_with_its_cluster() -> None:
    log, sent = load(ISTIO, "istio")
    found = {h["rule"]: h for h in hints(state_of(log.requests))}
    by_flag = Counter(f for r in sent for f in r["response_flags"])
    for rule, flag in [("no-healthy", "UH"), ("circuit-breaker", "UO"), ("no-route", "NR"), ("timeout", "UT"),
                       ("retries-exhausted", "URX"), ("rate-limited", "RL"), ("client-gave-up", "DC"),
                       ("upstream-closed", "UC")]:  # fmt: skip
        assert found[rule]["count"] == by_flag[flag], rule
    assert found["refused"]["count"] == by_flag["UF"]  # every UF here is a refused connect
    uh_cluster = next(r["upstream_cluster"] for r in sent if "UH" in r["response_flags"])
    assert found["no-healthy"]["where"]["upstream_cluster"] == [{"value": uh_cluster, "count": 1}]
    assert [h["severity"] for h in hints(state_of(log.requests))][:3] == ["critical"] * 3


def test_app_errors_and_rbac_rules() -> None:
    frame = pl.DataFrame(
        {
            "response_code": [503, 500, 403, 200],
            "response_flags": [None, None, None, None],
            "response_code_details": [
                "via_upstream",
                "via_upstream",
                "rbac_access_denied_matched_policy[none]",
                "via_upstream",
            ],
        }
    )
    found = {h["rule"]: h["count"] for h in hints(state_of(frame))}
    assert found == {"app-errors": 2, "rbac": 1}


@pytest.mark.parametrize(
    ("details", "decoded"),
    [
        (
            "upstream_reset_before_response_started{remote_connection_failure|TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end}",
            ("upstream_reset_before_response_started", "remote_connection_failure",
             "TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end"),
        ),
        (
            "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}",
            ("upstream_reset_before_response_started", "connection_failure", "delayed_connect_error:_111"),
        ),
        ("rbac_access_denied_matched_policy[none]", ("rbac_access_denied_matched_policy", "none", None)),
        ("via_upstream", ("via_upstream", None, None)),
    ],
)  # fmt: skip
def test_details_decoding(details: str, decoded: tuple[str | None, ...]) -> None:
    """The report's own decoding (``error_details``), on a 503 that carries the details Envoy wrote."""
    frame = pl.DataFrame({"response_code": [503], "response_flags": ["UF"], "response_code_details": [details]})
    d = failures.error_details(state_of(frame)).row(0, named=True)
    assert (d["kind"], d["reset_reason"], d["transport_failure"]) == decoded


def test_retries_from_attempt_counts() -> None:
    log, sent = load(CUSTOM)
    report = retries_report(state_of(log.requests))
    retried = [r for r in sent if r["upstream_request_attempt_count"] > 1]
    still_failed = [r for r in retried if failed(r)]
    assert report["retried_requests"] == len(retried)
    assert (report["retried_then_succeeded"], report["retried_and_failed"]) == (
        len(retried) - len(still_failed),
        len(still_failed),
    )
    by_cluster: Counter[str] = Counter()
    for r in sent:
        by_cluster[r["upstream_cluster"]] += max(r["upstream_request_attempt_count"] - 1, 0)
    assert {c["upstream_cluster"]: c["retries"] for c in report["clusters"]} == {
        k: v for k, v in by_cluster.items() if v
    }


def test_latency_percentiles_match_numpy_style_linear_interpolation() -> None:
    frame = pl.DataFrame(
        {"duration": list(range(1, 101)), "upstream_cluster": ["a"] * 100, "response_code": [200] * 100}
    )
    log = AccessLog(frame, pl.DataFrame(schema=UNPARSED_SCHEMA), pl.DataFrame(schema=OTHER_SCHEMA), resolve("istio"))
    lat = summarize_log(log)["latency"]["duration"]
    assert lat is not None
    # linear interpolation between closest ranks, as numpy.percentile: p50 of 1..100 = 50.5, p99 = 99.01
    assert (lat["p50"], lat["p90"], lat["p99"], lat["max"]) == pytest.approx((50.5, 90.1, 99.01, 100.0))


def test_where_and_since_narrow_requests_not_lines() -> None:
    log, sent = load(ISTIO, "istio")
    errors = narrow(log, where="response_code>=500 or response_code=0")
    assert errors.requests.height == sum(1 for r in sent if r["response_code"] >= 500 or r["response_code"] == 0)
    uf = narrow(log, where="response_flags~UF, upstream_cluster~down")
    assert uf.requests.height == sum(1 for r in sent if "UF" in r["response_flags"])
    summary = summarize_log(uf, tally=Tally.of(log))
    assert summary["lines"]["access"] == len(sent) and summary["requests"] == uf.requests.height
    last = log.requests["start_time"].max()
    assert narrow(log, since="0s").requests["start_time"].to_list() == [last] * narrow(log, since="0s").requests.height
    assert narrow(log, until="2000-01-01T00:00:00Z").requests.height == 0


def test_where_errors_say_where() -> None:
    with pytest.raises(FilterError) as info:
        compile_where(
            "response_code>=500 and respons_flags~UF", {"response_code": pl.Int64(), "response_flags": pl.String()}
        )
    assert str(info.value) == "--where error at column 24: no column 'respons_flags'; did you mean 'response_flags'?"
    with pytest.raises(FilterError) as far:
        compile_where("colour=red", {"response_code": pl.Int64(), "response_flags": pl.String()})
    assert str(far.value) == "--where error at column 1: no column 'colour' (columns: response_code, response_flags)"


def test_where_reads_values_as_the_column_type() -> None:
    """Times compare as times, numbers as numbers; a value of the wrong type is an error at the value,
    never a filter that silently matches nothing."""
    log, _ = load(ISTIO, "istio")
    twin = [json.loads(x) for x in (FIXTURES / "envoy" / "istio-json" / "access.log").read_text().splitlines()]
    times = sorted(r["start_time"] for r in twin)  # what Envoy's JSON logger wrote for the same requests
    cut = times[len(times) // 2]
    for op, keep in ((">=", lambda t: t >= cut), (">", lambda t: t > cut), ("<", lambda t: t < cut)):
        for spelled in (cut, cut.removesuffix("Z"), f"'{cut}'"):  # naive ISO times are UTC
            got = log.requests.filter(compile_where(f"start_time{op}{spelled}", log.requests.schema)).height
            assert got == sum(1 for t in times if keep(t)), (op, spelled)
    schema = log.requests.schema
    for where, column, message in [
        ("response_code=abc", 15, "response_code holds numbers: got 'abc'"),
        ("response_code>>5", 15, "response_code holds numbers: got '>5'"),
        ("start_time>5", 12, "start_time holds times (ISO-8601, e.g. 2026-11-25T20:31:00Z): got '5'"),
        ('path~"("', 6, "not a valid regex (unclosed group)"),
        ("(response_code=503", 1, "'(' is never closed"),
        ("response_code=503)", 18, "')' closes nothing"),
        ("path~'(' and (duration>1 or (duration<0)", 14, "'(' is never closed"),  # a quoted ( is a value
        ("duration>1 and path~[", 21, "not a valid regex (unclosed character class)"),
    ]:
        with pytest.raises(FilterError) as info:
            compile_where(where, schema)
        assert str(info.value) == f"--where error at column {column}: {message}", where
    # text columns compare as text, whatever the value looks like
    assert log.requests.filter(compile_where("route_name=default", schema)).height == sum(
        1 for r in twin if r["route_name"] == "default"
    )


def test_by_table_counts_errors_per_cluster() -> None:
    log, sent = load(ISTIO, "istio")
    table = by_table(state_of(log.requests), "upstream_cluster", top=100)
    errors = Counter(r["upstream_cluster"] for r in sent if failed(r))
    got = {c: e for c, e in table.select("upstream_cluster", "errors").iter_rows() if e}
    assert got == {k: v for k, v in errors.items() if k is not None}


def test_bucket_size_grows_with_the_span() -> None:
    import datetime as dt

    assert bucket_seconds(dt.timedelta(seconds=20)) == 1
    assert bucket_seconds(dt.timedelta(minutes=30)) == 60
    assert bucket_seconds(dt.timedelta(hours=10)) == 1800


def test_timeline_keeps_empty_buckets_so_a_gap_shows() -> None:
    import datetime as dt

    from meshlog.figures import sparkline
    from meshlog.reports.timeline import timeline

    t0 = dt.datetime(2026, 11, 25, 21, 0, 0, tzinfo=dt.UTC)
    times = [t0 + dt.timedelta(seconds=s) for s in (0, 1, 2, 180, 181)]  # two bursts three minutes apart
    frame = pl.DataFrame(
        {"start_time": times, "response_code": [200, 503, 200, 0, 0], "response_flags": [None, "UF", None, "DC", None]}
    )
    step, buckets = timeline(state_of(frame))
    assert step == 5 and buckets.height == 180 // 5 + 1
    assert buckets["requests"].to_list() == [3] + [0] * 35 + [2]
    assert buckets["errors"].to_list() == [1] + [0] * 35 + [1]  # the TCP 0 without a flag is no error
    assert buckets["start_time"][-1] == t0 + dt.timedelta(seconds=180)
    line = sparkline(buckets["requests"].to_list())
    assert line == "█" + " " * 35 + "▅"  # 2 of 3: five eighths


def test_sparkline_scales_from_zero() -> None:
    from meshlog.figures import sparkline

    assert sparkline([19, 19]) == "██"  # equal buckets are full, not empty
    assert sparkline([15, 4]) == "█▂"
    assert sparkline([0, 1, 1000]) == " ▁█"  # one request among a thousand still shows
    assert sparkline([]) == ""


def test_errors_are_5xx_and_flagged_zeros_in_both_languages() -> None:
    """A TCP connection that went well logs code 0 with no flag: not an error (the lab sent one)."""
    from meshlog.reports.traffic import errors_filter, is_error

    log, sent = load(ISTIO, "istio")
    tcp_ok = [r for r in sent if r["tcp"] and not r["response_flags"]]
    assert tcp_ok and all(r["response_code"] == 0 for r in tcp_ok)
    want = sum(1 for r in sent if failed(r))
    cols = log.requests.columns
    assert log.requests.filter(is_error(cols)).height == want
    assert narrow(log, where=errors_filter(cols)).requests.height == want
    assert summarize_log(log)["overview"]["errors"] == want


def test_a_hint_filter_names_only_columns_the_log_has() -> None:
    """A custom format with details but no transport failure column: the TLS rule reads the details,
    and its filter lists the same lines."""
    frame = pl.DataFrame(
        {
            "response_code": [503, 200],
            "response_flags": ["UF", None],
            "response_code_details": [
                "upstream_reset_before_response_started{connection_failure|TLS_error:_CERTIFICATE_VERIFY_FAILED}",
                "via_upstream",
            ],
        }
    )
    log = AccessLog(frame, pl.DataFrame(schema=UNPARSED_SCHEMA), pl.DataFrame(schema=OTHER_SCHEMA), resolve("istio"))
    mtls = next(h for h in hints(state_of(frame)) if h["rule"] == "mtls")
    assert mtls["count"] == 1 and "upstream_transport_failure_reason" not in mtls["filter"]
    assert narrow(log, where=mtls["filter"]).requests.height == 1


def test_each_hint_says_the_filter_that_lists_its_lines() -> None:
    log, sent = load(ISTIO, "istio")
    by_flag = Counter(f for r in sent for f in r["response_flags"])
    found = hints(state_of(log.requests))
    assert found
    for hint in found:
        assert narrow(log, where=hint["filter"]).requests.height == hint["count"], hint["rule"]
    refused = next(h for h in found if h["rule"] == "refused")
    assert refused["count"] == by_flag["UF"]
    assert refused["filter"].startswith("response_flags~'(^|,)UF(,|$)' and (upstream_transport_failure_reason~")


def test_folding_chunks_gives_the_same_summary_as_the_whole_log() -> None:
    """Input larger than memory is summarised chunk by chunk; the answer must not change."""
    from meshlog.reports.fold import Folded

    fmt = resolve("istio")
    chunks = [parse_lines(f, fmt) for f in read_lines(str(FIXTURES / "sample" / "istio-proxy.log"), chunk_bytes=700)]
    assert len(chunks) > 5
    folded, tally = Folded(), Tally()
    for chunk in chunks:
        folded.add(folded.chunk(chunk))
        tally.merge(Tally.of(chunk))
    whole = AccessLog.concat(chunks, fmt)
    assert summarize_log(whole) == summary_dict(folded.state.with_tally(tally), fmt)


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("400ms", None), ("0s", None), (None, "300ms"), ("700ms", "150ms"), ("2026-11-25T21:21:28.7Z", "200ms"),
        ("500ms", "2026-11-25T21:21:29.2Z"),
    ],
)
def test_a_window_back_from_the_last_request_is_decided_in_one_pass(since: str | None, until: str | None) -> None:
    """``--since 2s`` counts back from the last request, known only at the end: chunk by chunk, the
    requests in the window are exactly those the whole log's filter keeps."""
    from meshlog.reports.fold import Folded

    fmt = resolve("istio")
    chunks = [parse_lines(f, fmt) for f in read_lines(str(FIXTURES / "sample" / "istio-proxy.log"), chunk_bytes=500)]
    folded = Folded((since, until))
    for chunk in chunks:
        folded.add(folded.chunk(chunk))
    whole = AccessLog.concat(chunks, fmt)
    kept = narrow(whole, since=since, until=until)
    tally = Tally.of(whole)
    assert summary_dict(folded.state.with_tally(tally), fmt) == summarize_log(kept, tally=tally)
    assert folded.state.total == kept.requests.height
    assert 0 < kept.requests.height < whole.requests.height  # the window cuts: the test can fail


QUANTILES: tuple[tuple[Literal["p50", "p90", "p99"], float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def _linear_percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), written out independently."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, frac = int(pos), pos - int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


def test_latency_from_the_text_log_matches_the_json_twin_envoy_wrote() -> None:
    """Durations per cluster computed with plain Python from Envoy's JSON twin of the same requests."""
    twin = [json.loads(x) for x in (FIXTURES / "envoy" / "istio-json" / "access.log").read_text().splitlines()]
    log, _ = load(ISTIO, "istio")
    summary = summarize_log(log, top=100)
    durations = [r["duration"] for r in twin]
    overall = summary["latency"]["duration"]
    assert overall is not None
    for key, q in QUANTILES:
        assert overall[key] == pytest.approx(_linear_percentile(durations, q))
    assert overall["max"] == max(durations)
    by_cluster: dict[str, list[float]] = {}
    for r in twin:
        if r["upstream_cluster"]:
            by_cluster.setdefault(r["upstream_cluster"], []).append(r["duration"])
    got = {row["upstream_cluster"]: row for row in summary["latency"]["by_upstream_cluster"]}
    assert set(got) == set(by_cluster)
    for cluster, values in by_cluster.items():
        assert got[cluster]["requests"] == len(values)
        for key, q in QUANTILES:
            assert got[cluster][key] == pytest.approx(_linear_percentile(values, q)), (cluster, key)
    ust = [int(r["upstream_service_time"]) for r in twin if r["upstream_service_time"] is not None]
    upstream = summary["latency"]["upstream_service_time"]
    assert upstream is not None
    assert upstream["p90"] == pytest.approx(_linear_percentile(ust, 0.9))
    codes = Counter(r["response_code"] for r in twin)
    assert {c["code"]: c["count"] for c in summary["response_codes"]} == dict(codes)


def test_every_rule_filter_compiles_with_its_regexes_checked() -> None:
    """The hints compile their own filters without checking each regex again (``filters.WRITTEN``):
    this is where they are checked, against every column a rule may read."""
    from meshlog.filters import compile_where
    from meshlog.reports.hints import RULES, rule_filter

    schema = {"response_flags": pl.String(), "response_code": pl.Int64(), "response_code_details": pl.String(),
              "upstream_transport_failure_reason": pl.String(), "upstream_cluster": pl.String()}  # fmt: skip
    texts = [t for rule in RULES if (t := rule_filter(rule, schema)) is not None]
    assert len(texts) == len(RULES)
    for text in texts:
        compile_where(text, schema)  # the checking backend: a bad regex would raise FilterError here
