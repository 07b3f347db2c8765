"""Synthetic Istio standard metrics with answers known in advance, as OpenMetrics for promtool backfill.

Why synthetic and linear: a real PromQL engine is only a useful oracle if we know what it must
answer. Every counter here grows by the same amount at every sample (value at sample k is
``k * per_step``), so ``increase()``/``rate()`` over any window that holds >= 2 samples of the
series and is evaluated at the last sample are exact (Prometheus' extrapolation of a straight
line is the line itself), and ``histogram_quantile`` sees the same bucket shape in every window.

The answers (``expected_*``, ``bookinfo_expected``) are computed from the ``Flow`` specs alone,
never from a Prometheus answer, with an independent re-implementation of ``histogram_quantile``.

Layout of the text (OpenMetrics 1.0, what ``promtool tsdb create-blocks-from openmetrics`` reads):
one family after the other, each Metric (label set) with all its points in time order, a
histogram point being its ``_bucket`` lines + ``_count`` + ``_sum`` at one timestamp (seconds),
then ``# EOF``. The counter family is declared ``# TYPE istio_requests counter`` and its
samples are named ``istio_requests_total``, as OpenMetrics wants.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = [
    "BOOKINFO",
    "BUCKETS",
    "Expected",
    "Flow",
    "anchored_range",
    "bookinfo_expected",
    "cumulative_buckets",
    "expected_increase",
    "expected_quantile",
    "expected_rate",
    "openmetrics",
    "quantile_on_bucket_edge",
    "scenario_expected",
]

# Envoy's default histogram bounds (what a sidecar exposes unless statsHistogramBuckets changes them),
# spelled as Envoy prints them. The +Inf bucket is implicit and comes last in Flow.bucket_counts.
BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
_LE: tuple[str, ...] = (*(str(int(b)) if b == int(b) else str(b) for b in BUCKETS), "+Inf")
REQUESTS = "istio_requests"
DURATION = "istio_request_duration_milliseconds"
QUANTILES = (0.5, 0.9, 0.99)


def _app_version(workload: str) -> tuple[str, str]:
    """``reviews-v2`` -> (``reviews``, ``v2``): Bookinfo's naming, where the pod labels app/version match."""
    app, sep, version = workload.rpartition("-")
    if sep and version.startswith("v") and version[1:].isdigit():
        return app, version
    return workload, "latest"


@dataclass(frozen=True)
class Flow:
    """Traffic of one Istio label set as seen by one reporter.

    ``bucket_counts``: observations per step in each bucket, NOT cumulative, one entry per
    finite bound of ``BUCKETS`` and a last one for +Inf; they must add up to ``per_step``.
    ``sum_ms_per_step``: total duration of those observations (checked against the bounds).
    """

    source_workload: str
    destination_service_name: str
    namespace: str
    reporter: str  # "source" | "destination"
    response_code: str
    per_step: int
    bucket_counts: tuple[int, ...]
    sum_ms_per_step: float
    response_flags: str = "-"
    grpc_response_status: str = ""  # non-empty -> request_protocol="grpc"
    labels: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.reporter not in ("source", "destination"):
            raise ValueError(f"reporter must be source or destination, not {self.reporter!r}")
        if len(self.bucket_counts) != len(BUCKETS) + 1:
            raise ValueError(f"bucket_counts needs {len(BUCKETS) + 1} entries (finite bounds + +Inf)")
        if min(self.bucket_counts) < 0 or sum(self.bucket_counts) != self.per_step:
            raise ValueError(f"bucket_counts {self.bucket_counts} must be >= 0 and add up to {self.per_step}")
        lower = sum(n * lo for n, lo in zip(self.bucket_counts, (0.0, *BUCKETS), strict=True))
        finite = zip(self.bucket_counts[:-1], BUCKETS, strict=True)  # the last count is the +Inf bucket's
        upper = math.inf if self.bucket_counts[-1] else sum(n * hi for n, hi in finite)
        if not lower <= self.sum_ms_per_step <= upper:
            raise ValueError(f"sum_ms_per_step {self.sum_ms_per_step} impossible for these buckets ({lower}..{upper})")
        object.__setattr__(self, "labels", self._labels())

    @property
    def destination_service(self) -> str:
        return f"{self.destination_service_name}.{self.namespace}.svc.cluster.local"

    @property
    def request_protocol(self) -> str:
        return "grpc" if self.grpc_response_status else "http"

    def _labels(self) -> dict[str, str]:
        """Istio's full label set (istio.io metrics reference), sorted by name as Envoy prints them."""
        ns, dst = self.namespace, self.destination_service_name
        src_app, src_version = _app_version(self.source_workload)
        labels = {
            "reporter": self.reporter,
            "source_workload": self.source_workload,
            "source_workload_namespace": ns,
            "source_principal": f"spiffe://cluster.local/ns/{ns}/sa/{ns}-{src_app}",
            "source_app": src_app,
            "source_version": src_version,
            "source_canonical_service": src_app,
            "source_canonical_revision": src_version,
            "source_cluster": "Kubernetes",
            "destination_workload": f"{dst}-v1",
            "destination_workload_namespace": ns,
            "destination_principal": f"spiffe://cluster.local/ns/{ns}/sa/{ns}-{dst}",
            "destination_app": dst,
            "destination_version": "v1",
            "destination_service": self.destination_service,
            "destination_service_name": dst,
            "destination_service_namespace": ns,
            "destination_canonical_service": dst,
            "destination_canonical_revision": "v1",
            "destination_cluster": "Kubernetes",
            "request_protocol": self.request_protocol,
            "response_code": self.response_code,
            "response_flags": self.response_flags,
            # Envoy reports mTLS only on the server side; the client side cannot know.
            "connection_security_policy": "mutual_tls" if self.reporter == "destination" else "unknown",
        }
        if self.grpc_response_status:  # an empty label is the same as no label to Prometheus
            labels["grpc_response_status"] = self.grpc_response_status
        return dict(sorted(labels.items()))


def _label_text(labels: dict[str, str]) -> str:
    """``{a="x",b="y"}`` with OpenMetrics escaping (our values never need it, but be correct)."""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in labels.values())
    return ",".join(f'{k}="{v}"' for k, v in zip(labels, esc, strict=True))


def anchored_range(duration_s: int, step: int, *, now: float | None = None, lag_s: int = 30) -> tuple[int, int]:
    """(start, end) on the step grid, ending ``lag_s`` before now.

    Why: instant queries only look back 5 minutes, so data must end shortly before the time the
    tests query at (they query at ``end``, where every window's last sample sits exactly).
    """
    now = time.time() if now is None else now
    end = int(now - lag_s) // step * step
    return end - duration_s, end


def openmetrics(flows: Sequence[Flow], start: int, end: int, step: int) -> str:
    """The OpenMetrics text of ``flows`` sampled at start, start+step, ..., end (counters start at 0)."""
    if step <= 0 or end < start or (end - start) % step:
        raise ValueError("need step > 0 and end - start a multiple of step")
    seen = [frozenset(f.labels.items()) for f in flows]
    if len(set(seen)) != len(seen):
        raise ValueError("two flows have the same Istio label set; merge them (one series each)")
    points = range((end - start) // step + 1)
    out: list[str] = [
        f"# HELP {REQUESTS} Counter of requests (synthetic, meshlog test lab).\n",
        f"# TYPE {REQUESTS} counter\n",
    ]
    for f in flows:
        head = f"{REQUESTS}_total{{{_label_text(f.labels)}}} "
        out.extend(f"{head}{k * f.per_step} {start + k * step}\n" for k in points)
    out += [
        f"# HELP {DURATION} Request duration in milliseconds (synthetic, meshlog test lab).\n",
        f"# TYPE {DURATION} histogram\n",
    ]
    for f in flows:
        labels = _label_text(f.labels)
        bucket_heads = [f'{DURATION}_bucket{{{labels},le="{le}"}} ' for le in _LE]
        cumulative = [sum(f.bucket_counts[: i + 1]) for i in range(len(_LE))]
        count_head, sum_head = f"{DURATION}_count{{{labels}}} ", f"{DURATION}_sum{{{labels}}} "
        for k in points:
            ts = start + k * step
            out.extend(f"{h}{k * c} {ts}\n" for h, c in zip(bucket_heads, cumulative, strict=True))
            out.append(f"{count_head}{k * f.per_step} {ts}\n")
            out.append(f"{sum_head}{_num(k * f.sum_ms_per_step)} {ts}\n")
    out.append("# EOF\n")
    return "".join(out)


def _num(x: float) -> str:
    """Shortest round-tripping spelling (``repr``), integers without ``.0``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# ------------------------------------------------------------------------------------ answers


def expected_increase(flows: Iterable[Flow], window_s: int, step: int) -> float:
    """``sum(increase(istio_requests_total[window]))`` over ``flows`` (also ``_count``).

    For a query at the last sample with step <= window <= data range. Bit-exact when the window
    is a multiple of step (Prometheus then scales by exactly 1.0); otherwise equal to ~1 ulp.
    """
    return float(Fraction(sum(f.per_step for f in flows) * window_s, step))


def expected_rate(flows: Iterable[Flow], step: int) -> float:
    """Requests per second of ``flows`` (what ``sum(rate(...))`` gives over any such window)."""
    return float(Fraction(sum(f.per_step for f in flows), step))


def cumulative_buckets(flows: Iterable[Flow], window_s: int, step: int) -> list[tuple[float, float]]:
    """(le, cumulative increase over the window) summed over ``flows``, +Inf last: ``sum by (le)``."""
    flows = list(flows)
    out, running = [], 0
    for i, le in enumerate((*BUCKETS, math.inf)):
        running += sum(f.bucket_counts[i] for f in flows)
        out.append((float(le), float(Fraction(running * window_s, step))))
    return out


def expected_quantile(cumulative_bucket_increases: Sequence[tuple[float, float]], q: float) -> float:
    """What ``histogram_quantile(q, ...)`` answers for these (upper bound, cumulative count) pairs.

    Written from the documented rules, independently of Prometheus' code: find the first bucket
    whose cumulative count reaches rank = q * total, interpolate linearly inside it (the first
    bucket starts at 0); a rank beyond the last finite bucket answers that bucket's bound.
    Out-of-range q gives -Inf/+Inf, no observations or no +Inf bucket give NaN, as in Prometheus.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(cumulative_bucket_increases)
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return math.nan
    counts = [c for _, c in buckets]
    if any(b < a for a, b in itertools.pairwise(counts)):
        raise ValueError(f"cumulative counts must not decrease: {counts}")
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets[:-1]:
        if cumulative >= rank:
            if lower == 0.0 and below == 0.0 and upper <= 0:
                return upper  # a first bucket with a non-positive bound has no width to interpolate in
            inside = cumulative - below
            return math.nan if inside == 0 else lower + (upper - lower) * ((rank - below) / inside)
        lower, below = upper, cumulative
    return lower  # rank lies in the +Inf bucket: the highest finite bound is all we know


def quantile_on_bucket_edge(flows: Iterable[Flow], q: float) -> bool:
    """True if q's answer is ill-posed: its rank equals a cumulative count followed by an empty bucket.

    Prometheus works on float rates summed in its own order, so at such a rank it may land on
    either side of the edge, and with an empty bucket after it the two sides differ a lot
    (LAB: 1.0 vs 5.0, 60000 vs 1800000). On an edge before a non-empty bucket both sides
    give the same bound. ``scenario_expected`` refuses ill-posed specs.
    """
    flows = list(flows)
    cumulative = list(itertools.accumulate(sum(f.bucket_counts[i] for f in flows) for i in range(len(BUCKETS) + 1)))
    rank = Fraction(str(q)) * cumulative[-1]  # q as written in PromQL, e.g. "0.9" -> 9/10
    return cumulative[-1] > 0 and sum(c == rank for c in cumulative) >= 2


@dataclass(frozen=True)
class Expected:
    """Answers for one scenario; keys are (reporter, destination_service_name) unless noted.

    ``error_ratio_5xx``/``grpc_error_ratio`` are per destination_service_name, client view
    (reporter="source"), and hold 0.0 where PromQL's ratio query returns *no* sample (the
    numerator has no series, so the division drops that service).
    ``quantile_ms`` keys are (reporter, destination_service_name, q) for q in 0.5/0.9/0.99.
    """

    window_s: int
    step: int
    requests_per_second: dict[tuple[str, str], float]
    increase: dict[tuple[str, str], float]
    error_ratio_5xx: dict[str, float]
    grpc_error_ratio: dict[str, float]
    quantile_ms: dict[tuple[str, str, float], float]
    mean_ms: dict[tuple[str, str], float]
    buckets: dict[tuple[str, str], list[tuple[float, float]]]


def _ratio(part: int, whole: int) -> float:
    return float(Fraction(part, whole))


def _is_grpc_error(f: Flow) -> bool:
    """Kiali's rule: grpc-status 1..16 on a response whose HTTP code is not itself an error."""
    return f.grpc_response_status not in ("", "0") and not f.response_code.startswith(("0", "4", "5"))


def scenario_expected(flows: Sequence[Flow], window_s: int = 600, step: int = 15) -> Expected:
    """All answers for ``flows`` over a ``window_s`` window evaluated at the data's last sample."""
    by_key: dict[tuple[str, str], list[Flow]] = {}
    for f in flows:
        by_key.setdefault((f.reporter, f.destination_service_name), []).append(f)
    by_key = dict(sorted(by_key.items()))
    client = {svc: fs for (reporter, svc), fs in by_key.items() if reporter == "source"}
    edges = [(*k, q) for k, fs in by_key.items() for q in QUANTILES if quantile_on_bucket_edge(fs, q)]
    if edges:
        raise ValueError(f"quantile ranks on a bucket edge before an empty bucket (ambiguous in Prometheus): {edges}")
    buckets = {k: cumulative_buckets(fs, window_s, step) for k, fs in by_key.items()}
    return Expected(
        window_s=window_s,
        step=step,
        requests_per_second={k: expected_rate(fs, step) for k, fs in by_key.items()},
        increase={k: expected_increase(fs, window_s, step) for k, fs in by_key.items()},
        error_ratio_5xx={
            svc: _ratio(sum(f.per_step for f in fs if f.response_code.startswith("5")), sum(f.per_step for f in fs))
            for svc, fs in client.items()
        },
        grpc_error_ratio={
            svc: _ratio(sum(f.per_step for f in fs if _is_grpc_error(f)), sum(f.per_step for f in fs))
            for svc, fs in client.items()
            if any(f.request_protocol == "grpc" for f in fs)
        },
        quantile_ms={(*k, q): expected_quantile(b, q) for k, b in buckets.items() for q in QUANTILES},
        mean_ms={k: sum(f.sum_ms_per_step for f in fs) / sum(f.per_step for f in fs) for k, fs in by_key.items()},
        buckets=buckets,
    )


# ------------------------------------------------------------------------------------ BOOKINFO


def _b(**per_le: int) -> tuple[int, ...]:
    """Bucket counts from ``le_10=4, le_inf=1``-style keywords (bucket (5,10] holds 4 per step)."""
    names = [f"le_{le.replace('.', '_').replace('+', '').lower()}" for le in _LE]
    unknown = set(per_le) - set(names)
    if unknown:
        raise ValueError(f"unknown buckets {unknown}; use one of {names}")
    return tuple(per_le.get(n, 0) for n in names)


_REVIEWS_OK = _b(le_10=10, le_25=15, le_50=4, le_100=1)  # 30/step: 10 in (5,10], 15 in (10,25], ...
_CHECKOUT_OK = _b(le_10=8, le_25=12, le_50=5, le_100=2)  # 27/step

BOOKINFO: tuple[Flow, ...] = (
    # productpage -> reviews, client view: 2 rps of 200s, plus client-side failures the server never sees.
    Flow("productpage-v1", "reviews", "bookinfo", "source", "200", 30, _REVIEWS_OK, 570.0),
    Flow("productpage-v1", "reviews", "bookinfo", "source", "503", 3, _b(le_5=3), 6.0, response_flags="UF"),
    Flow("productpage-v1", "reviews", "bookinfo", "source", "504", 1, _b(le_500=1), 300.0, response_flags="UT"),
    # Server view of the same traffic: only the requests that reached the reviews sidecar.
    Flow("productpage-v1", "reviews", "bookinfo", "destination", "200", 30, _REVIEWS_OK, 540.0),
    # reviews -> ratings: app 500s reach the server, so both reporters see them.
    Flow("reviews-v2", "ratings", "bookinfo", "source", "200", 12, _b(le_5=7, le_10=4, le_25=1), 75.0),
    Flow("reviews-v2", "ratings", "bookinfo", "source", "500", 3, _b(le_5=3), 6.0),
    Flow("reviews-v2", "ratings", "bookinfo", "destination", "200", 12, _b(le_5=7, le_10=4, le_25=1), 60.0),
    Flow("reviews-v2", "ratings", "bookinfo", "destination", "500", 3, _b(le_5=3), 4.5),
    # frontend -> checkout over gRPC: errors are HTTP 200 + grpc-status 14 (UNAVAILABLE), made by the
    # client sidecar (connect failure, a long stream cut after 1.5 h: the +Inf bucket).
    Flow("frontend-v1", "checkout", "shop", "source", "200", 27, _CHECKOUT_OK, 660.0, grpc_response_status="0"),
    Flow(
        "frontend-v1",
        "checkout",
        "shop",
        "source",
        "200",
        2,
        _b(le_5=1, le_2500=1),
        1503.0,
        response_flags="UF",
        grpc_response_status="14",
    ),
    Flow(
        "frontend-v1",
        "checkout",
        "shop",
        "source",
        "200",
        1,
        _b(le_inf=1),
        5_400_000.0,
        response_flags="UC",
        grpc_response_status="14",
    ),
    Flow("frontend-v1", "checkout", "shop", "destination", "200", 27, _CHECKOUT_OK, 600.0, grpc_response_status="0"),
)


def bookinfo_expected(window_s: int = 600, step: int = 15) -> Expected:
    """The answers for ``BOOKINFO`` (from the specs above, never from a Prometheus answer)."""
    return scenario_expected(BOOKINFO, window_s, step)
