"""Lines that are not access records: what they are, so none is lost or mistaken for an error.

An istio-proxy container prints pilot-agent logs, Envoy application logs and blank or
continuation lines beside its access log (``../shared/reference/input-streams.md`` §1.7).
Wrapped streams add their own: a collector's log and banner between its records (§3.2,
§4.2), istio-init's iptables dump in ``kubectl logs --all-containers``.
"""

from __future__ import annotations

import polars as pl

# (kind, regex) in order; the first match names the line.
OTHER_LINES: tuple[tuple[str, str], ...] = (
    ("blank", r"^\s*$"),
    ("envoy-log", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\t(?:trace|debug|info|warning|error|critical)\tenvoy "),
    # ztunnel's own lines (Istio ambient): its targets are Rust module paths (`xds::client`, `proxy::h2`)
    # or its own names; tabs, or the spaces a terminal copy leaves
    (
        "ztunnel-log",
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[\t ]+(?:trace|debug|info|warn|error)[\t ]+"
        r"(?:ztunnel|access|dns|hyper_util|[a-z_]+::[^\t ]*)[\t ]",
    ),
    ("istio-log", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\t(?:debug|info|warn|error|fatal)\t"),
    ("envoy-log", r"^\[Envoy \(Epoch \d+\)\] \["),
    ("envoy-log", r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[\w+\]"),
    ("kubectl", r"^error: "),
    ("fluentd-log", r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \[(?:trace|debug|info|warn|error|fatal)\]: "),
    ("fluentbit-log", r"^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\] \[\s*(?:trace|debug|info|warn|error)\] "),
    ("fluentbit-log", r"^Fluent Bit v\d|^\* (?:Copyright|Fluent Bit is|https://fluentbit)|^[ _|/\\()`',.<>V-]{12,}$"),
    (
        "iptables",
        r"^(?:-[AIN] [A-Z]|:[A-Z][-A-Z_]* [A-Z-]+ \[\d+:\d+\]$|\*(?:nat|filter|mangle|raw)$|COMMIT$"
        r"|# (?:Generated|Completed) )",
    ),
    ("json-log", r'^\s*\{.*"level"\s*:.*"msg"\s*:|^\s*\{.*"msg"\s*:.*"level"\s*:'),
)


def other_kind() -> pl.Expr:
    """The kind of non-access line ``line`` is, or null when it is none of the known kinds."""
    expr = pl.lit(None, dtype=pl.String)
    for kind, pattern in reversed(OTHER_LINES):
        expr = pl.when(pl.col("line").str.contains(pattern)).then(pl.lit(kind)).otherwise(expr)
    return expr
