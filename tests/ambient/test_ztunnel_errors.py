"""ztunnel's error texts decoded into kinds: each text of records.json gets the kind the reference note's
§4 assigns it (tests/ambient/expect.py writes the kind per text, with the note's category), and the
report's ``errors_by_kind`` counts what records.json holds under that same mapping."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from meshlog.ztunnel_errors import BY_KEY, error_kind
from tests.ambient.expect import EXPECTED_KIND, TEXT, ZTUNNEL, ended, errors_by_kind, field, kind_of, summary

TEXTS = sorted({field(r, "error") for r in ZTUNNEL if field(r, "error") is not None})


def test_every_error_text_of_the_records_has_an_expected_kind() -> None:
    assert set(EXPECTED_KIND) == set(TEXTS)
    assert len(TEXTS) == 26  # README: "The 26 errors", every text once
    assert set(EXPECTED_KIND.values()) <= set(BY_KEY)


@pytest.mark.parametrize("text", TEXTS, ids=[f"{n:02d}-{EXPECTED_KIND[t]}" for n, t in enumerate(TEXTS)])
def test_error_kind_is_the_note_category(text: str) -> None:
    got = pl.select(error_kind(pl.lit(text, dtype=pl.String)).alias("kind")).item()
    assert got == EXPECTED_KIND[text], text


def test_no_error_has_no_kind() -> None:
    frame = pl.DataFrame({"error": [None, "io error: deadline has elapsed"]}, schema={"error": pl.String})
    assert frame.select(error_kind(pl.col("error")).alias("kind"))["kind"].to_list() == [None, "timeout"]


def test_the_readme_table_of_categories() -> None:
    """fixtures/ambient/README.md's table, by the note's categories (identity/cert provisioning is
    meshlog's "ca", unknown source its "identity"; connect failure and the upstream 503 both "refused")."""
    assert errors_by_kind() == {
        "refused": 2 + 1, "timeout": 2, "hbone-blocked": 1, "mtls": 3, "ca": 1, "identity": 2, "policy": 4,
        "no-upstream": 1, "waypoint": 2, "hbone": 2, "dns": 1, "reset": 2, "drain": 1, "other": 1,
    }  # fmt: skip
    assert sum(errors_by_kind().values()) == 26


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    connections: dict[str, Any] = summary(TEXT, "--top", "50")["connections"]
    return connections


def test_errors_by_kind_counts_the_records(report: dict[str, Any]) -> None:
    got = {e["kind"]: e["count"] for e in report["errors_by_kind"]}
    assert got == dict(errors_by_kind())


def test_errors_by_kind_titles_and_examples(report: dict[str, Any]) -> None:
    for entry in report["errors_by_kind"]:
        kind = BY_KEY[entry["kind"]]
        assert (entry["title"], entry["check"]) == (kind.title, kind.check)
        texts = {field(r, "error") for r in ended() if kind_of(r) == entry["kind"]}
        assert entry["example"] in texts, entry
    counts = [e["count"] for e in report["errors_by_kind"]]
    assert counts == sorted(counts, reverse=True)
