"""A real Prometheus holding the BOOKINFO scenario, shared by every metrics test module.

Session scope: backfill + start cost ~1.5-3 s, and the data never changes, so one server
serves all modules. Query at ``bookinfo_prometheus.end`` (the last sample): that is where
``increase()``/``rate()`` over ``window_s`` are exact and within the 5 min lookback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.lab.istio_series import BOOKINFO, Expected, Flow, anchored_range, bookinfo_expected, openmetrics
from tests.lab.prometheus import PrometheusLab

STEP = 15  # Istio's usual scrape interval
HOURS = 1
WINDOW_S = 600  # the [10m] every expected answer is computed for; rates hold for any window >= 2 steps


@dataclass(frozen=True)
class BookinfoPrometheus:
    """What a test needs: where to query, when, and what the answer must be."""

    url: str  # http://127.0.0.1:PORT
    start: int  # first sample (unix s); counters are 0 there
    end: int  # last sample (unix s): evaluate instant queries here
    step: int
    window_s: int
    flows: tuple[Flow, ...]
    expected: Expected
    lab: PrometheusLab


@pytest.fixture(scope="session")
def bookinfo_prometheus() -> Iterator[BookinfoPrometheus]:
    start, end = anchored_range(HOURS * 3600, STEP)
    with PrometheusLab(openmetrics=openmetrics(BOOKINFO, start, end, STEP)) as lab:
        yield BookinfoPrometheus(
            url=lab.url,
            start=start,
            end=end,
            step=STEP,
            window_s=WINDOW_S,
            flows=BOOKINFO,
            expected=bookinfo_expected(WINDOW_S, STEP),
            lab=lab,
        )
