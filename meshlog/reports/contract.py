"""The ``summarize -o json`` document as types: what users script against, checked by mypy.

``summary_dict`` builds a ``Summary``; the terminal, markdown, JSON and TUI renderers read one.
The keys of ``../shared/design/architecture.md`` are here with their meaning fixed; keys are only
ever added. Per-dimension keys (``by_route_name``, ``top_pod``…) are spelled out, one per
dimension a report can be grouped by.
"""


from typing import Any, NotRequired, TypedDict, cast


class Lines(TypedDict):
    total: int
    access: int
    unparsed: int
    other: int


class FormatInfo(TypedDict):
    name: str | None
    string: str | None  # None: no input's format is known yet (no access line came)


class InputFormat(TypedDict):
    name: str | None
    string: str
    sources: str  # the inputs that had this format, comma-separated


class TimeRange(TypedDict):
    start: str | None
    end: str | None


class Overview(TypedDict):
    requests_per_s: float | None
    errors: int
    error_ratio: float
    status_5xx: int
    status_0: int
    errors_without_path: int | None  # errors that logged no path (TCP); None: the format has no path


class Count(TypedDict):
    kind: str
    count: int


class UnparsedLine(TypedDict):
    source: str
    line_no: int
    reason: str


class Place(TypedDict):
    value: Any
    count: int


class FlagReport(TypedDict):
    flag: str
    name: str
    meaning: str
    count: int
    share: float
    top_upstream_cluster: NotRequired[list[Place]]
    top_route_name: NotRequired[list[Place]]
    top_pod: NotRequired[list[Place]]


class Percentiles(TypedDict):
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class Latency(TypedDict):
    duration: Percentiles | None
    upstream_service_time: Percentiles | None
    proxy_and_network: NotRequired[Percentiles | None]
    by_upstream_cluster: list[dict[str, Any]]
    by_route_name: NotRequired[list[dict[str, Any]]]
    by_authority: NotRequired[list[dict[str, Any]]]
    by_pod: NotRequired[list[dict[str, Any]]]
    by_path: NotRequired[list[dict[str, Any]]]
    by_response_code: NotRequired[list[dict[str, Any]]]
    slowest: NotRequired[list[dict[str, Any]]]


class Retries(TypedDict):
    attempt_counts: list[dict[str, int]] | None  # None: the format logs no attempt count
    retried_requests: int | None
    retried_then_succeeded: int | None
    retried_and_failed: int | None
    retry_limit_exceeded: int  # lines with URX
    clusters: list[dict[str, Any]]


class Timeline(TypedDict):
    bucket_seconds: int
    buckets: list[dict[str, Any]]


class Hint(TypedDict):
    severity: str
    title: str
    detail: str
    count: int
    share: float
    rule: str
    look_at: str
    where: dict[str, list[Place]]
    filter: str  # the --where text that lists the hint's lines


class Window(TypedDict):
    since: str | None
    until: str | None
    start: str | None
    end: str | None


class Summary(TypedDict):
    lines: Lines
    format: FormatInfo
    time_range: TimeRange
    requests: int
    overview: Overview
    other_lines: list[Count]
    unparsed_lines: list[UnparsedLine]
    response_codes: list[dict[str, int]]
    status_classes: list[dict[str, Any]]
    top_error_paths: list[dict[str, Any]]
    top_error_authorities: list[dict[str, Any]]
    response_flags: list[FlagReport]
    error_details: list[dict[str, Any]]
    transport_failures: list[dict[str, Any]]
    latency: Latency
    retries: Retries
    timeline: Timeline
    hints: list[Hint]
    connections: dict[str, Any] | None  # Istio ambient: ztunnel's L4 records (``reports.connections``); None: none came
    formats: NotRequired[list[InputFormat]]  # several inputs of different formats
    filter: NotRequired[str | None]  # --where
    window: NotRequired[Window | None]  # --since / --until
    metrics: NotRequired[dict[str, Any]]  # --prometheus: the log beside what the sidecars counted
    metrics_error: NotRequired[str]


def by_tables(latency: Latency) -> list[tuple[str, list[dict[str, Any]]]]:
    """The latency tables per dimension, ``by_upstream_cluster`` first: (dimension, rows) with rows."""
    keyed = cast(dict[str, Any], latency)
    return [(key[3:], rows) for key, rows in keyed.items() if key.startswith("by_") and rows]


def percentile_rows(latency: Latency) -> list[tuple[str, Percentiles]]:
    """duration, upstream_service_time and their gap, those the log has."""
    keyed = cast(dict[str, Any], latency)
    return [(k, keyed[k]) for k in ("duration", "upstream_service_time", "proxy_and_network") if keyed.get(k)]


# -- ``meshlog metrics -o json`` ----------------------------------------------------------------------


class CodeRate(TypedDict):
    response_code: str
    response_flags: str | None
    requests: float
    requests_per_s: float


class ServiceMetrics(TypedDict):
    destination_service: str
    reporter: str  # source | destination
    requests: float
    requests_per_s: float
    errors: float
    error_ratio: float  # 5xx and 0 over all
    grpc_error_ratio: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    by_code: list[CodeRate]


class MetricsWindow(TypedDict):
    start: str
    end: str
    seconds: float


class EnvoyValue(TypedDict):
    cluster_name: str | None
    value: float


class MetricsReport(TypedDict):
    source: str  # prometheus | scrape
    window: MetricsWindow
    services: list[ServiceMetrics]
    envoy: dict[str, list[EnvoyValue]] | None  # retries, timeouts, … per cluster
    missing: list[str]  # families the mesh does not expose, with the setting that enables them
    notes: list[str]
