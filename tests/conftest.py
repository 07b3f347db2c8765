"""Shared paths and helpers for the suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import AccessLog, lines_frame, parse_lines

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED = ROOT.parent / "shared"
PEER_DATA = SHARED / "peer-data"


def parse_text(lines: list[str], fmt: CompiledFormat, *, use_plan: bool = True) -> AccessLog:
    """Parse Python strings as one source (line numbers from 1)."""
    return parse_lines(lines_frame(lines, source="test"), fmt, use_plan=use_plan)


def failed(sent: dict[str, Any]) -> bool:
    """Whether a request the lab sent is an error: a 5xx, or code 0 with the flags the lab made Envoy set
    (a TCP connection that went well also logs 0, without a flag)."""
    return sent["response_code"] >= 500 or (sent["response_code"] == 0 and bool(sent["response_flags"]))


def row(log: AccessLog, i: int = 0) -> dict[str, Any]:
    return log.requests.row(i, named=True)


__all__ = ["FIXTURES", "PEER_DATA", "ROOT", "SHARED", "failed", "parse_text", "pl", "row"]


# -- the `lab` marker: tests that start a real Envoy, Prometheus or npm client -------------------------------

LAB_FIXTURES = frozenset({"envoy", "secured", "scenario", "bookinfo_prometheus"})
LAB_CALLS = ("node_send(", "PrometheusLab(", "EnvoyLab(", "run_formats(", "run_incident(", "run_chain(")


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Mark what needs the lab, so ``pytest -m "not lab"`` is the fast loop (``.ci/run`` runs all)."""
    import inspect

    import pytest

    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError, AttributeError):
            source = ""
        module = getattr(item, "module", None)
        in_lab_module = getattr(module, "LAB", False)
        if fixtures & LAB_FIXTURES or any(call in source for call in LAB_CALLS) or in_lab_module:
            item.add_marker(pytest.mark.lab)
