"""Where a line came from, read off a collector's tag: the forward receiver and the unwrapper agree.

Every expected value below is read by hand off the tag text (kubelet's layouts:
``/var/log/containers/<pod>_<ns>_<container>-<64 hex>.log`` and
``/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log``, with ``/`` turned into ``.``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl
import pytest

from meshlog.envelopes import Unwrapper
from meshlog.forward.protocol import Event, EventTime
from meshlog.forward.records import LineAssembler
from meshlog.kubernetes import is_partial, join_partials, record_partial, tag_metadata
from meshlog.parse import lines_frame

UID = "0f1e2d3c-1111-2222-3333-444455556666"
HEX = "9c" * 32
PODS_TAG = f"kube.var.log.pods.default_reviews-v1-abc_{UID}.istio-proxy.0.log"

# (tag, (pod, namespace, container)) — None where the tag names no pod.
TAGS: list[tuple[str, tuple[str | None, str | None, str | None]]] = [
    (PODS_TAG, ("reviews-v1-abc", "default", "istio-proxy")),
    # containers symlink, dots in the pod name (anchored on `containers.`)
    (f"kube.var.log.containers.web.v2-5d9f_shop_istio-proxy-{HEX}.log", ("web.v2-5d9f", "shop", "istio-proxy")),
    (
        f"kubernetes.var.log.containers.httpbin-74fb669cc6-jzs87_default_istio-proxy-{HEX}.log",
        ("httpbin-74fb669cc6-jzs87", "default", "istio-proxy"),
    ),
    # pods layout, dots in the pod name, a restart count past 9, another container
    (f"kube.var.log.pods.shop_web.v2-5d9f_{UID}.discovery.12.log", ("web.v2-5d9f", "shop", "discovery")),
    # a bare symlink name (a tag without the `containers.` part)
    (f"ratings-v1-7d9_bookinfo_istio-proxy-{HEX}.log", ("ratings-v1-7d9", "bookinfo", "istio-proxy")),
    (f"tail.ratings-v1-7d9_bookinfo_istio-proxy-{HEX}.log", ("ratings-v1-7d9", "bookinfo", "istio-proxy")),
    # garbage: none of kubelet's names
    ("app.logs", (None, None, None)),
    ("kube.var.log.containers.sleep-7656cf8794-7hkmv_default_istio-proxy-abc.log", (None, None, None)),  # short id
    ("kube.var.log.pods.default.istio-proxy.0.log", (None, None, None)),  # no <ns>_<pod>_<uid>
    (f"kube.var.log.pods.default_reviews-v1-abc_{UID}.istio-proxy.0.log.gz", (None, None, None)),  # not `.log`
]


def forward(tags: list[str]) -> list[tuple[str | None, ...]]:
    """pod, namespace, container per tag, through the forward receiver (records without a `kubernetes` map)."""
    record = {"log": "line\n", "stream": "stdout"}
    events = [Event(tag, EventTime(1719556871, i), record) for i, tag in enumerate(tags)]
    frame = LineAssembler().lines(events)
    return frame.select("pod", "namespace", "container").rows()


def unwrapped(tags: list[str]) -> list[tuple[str | None, ...]]:
    """The same, through the unwrapper: fluentd ``out_file`` lines (``TIME\\tTAG\\tJSON``)."""
    lines = [
        f"2024-06-28T06:40:08+00:00\t{tag}\t" + json.dumps({"log": f"line {i}\n", "stream": "stdout"})
        for i, tag in enumerate(tags)
    ]
    unwrapper = Unwrapper()
    frame = pl.concat([unwrapper.feed(lines_frame(lines, source="s")), unwrapper.flush()], how="diagonal_relaxed")
    assert frame["line"].to_list() == [f"line {i}" for i in range(len(tags))]
    assert unwrapper.detected == ["fluentd-out_file"]
    columns = ["pod", "namespace", "container"]
    return frame.select(pl.col(c) if c in frame.columns else pl.lit(None, pl.String).alias(c) for c in columns).rows()


def test_forward_reads_the_pods_layout_tag() -> None:
    """The issue: fluent-bit's tail of /var/log/pods/… gave no pod through the forward receiver."""
    assert forward([PODS_TAG]) == [("reviews-v1-abc", "default", "istio-proxy")]


def test_unwrapper_reads_the_pods_layout_tag() -> None:
    assert unwrapped([PODS_TAG]) == [("reviews-v1-abc", "default", "istio-proxy")]


@pytest.mark.parametrize("path", [forward, unwrapped], ids=["forward", "envelopes"])
def test_both_paths_read_every_tag_layout_alike(path: Callable[[list[str]], list[tuple[str | None, ...]]]) -> None:
    assert path([tag for tag, _ in TAGS]) == [expected for _, expected in TAGS]


def test_a_kubernetes_map_wins_over_the_tag_on_both_paths() -> None:
    kube = {"pod_name": "p", "namespace_name": "n", "container_name": "c"}
    record = {"log": "x\n", "stream": "stdout", "kubernetes": kube}
    got = LineAssembler().lines([Event(PODS_TAG, EventTime(1719556871, 0), record)])
    assert got.select("pod", "namespace", "container").rows() == [("p", "n", "c")]
    line = f"2024-06-28T06:40:08+00:00\t{PODS_TAG}\t" + json.dumps(record)
    out = Unwrapper().feed(lines_frame([line], source="s"))
    assert out.select("pod", "namespace", "container").rows() == [("p", "n", "c")]


def test_what_is_partial() -> None:
    """``_p`` (Fluent Bit) or ``logtag`` (fluentd parser-cri), first present; no flag is a whole line."""
    assert [
        record_partial(r)
        for r in (
            {"_p": "P"},
            {"logtag": "P"},
            {"logtag": "F"},
            {},
            {"_p": None, "logtag": "P"},
            {"_p": "F", "logtag": "P"},
        )
    ] == [True, True, False, False, True, False]
    flags = pl.Series(["P", "F", None, "p"])
    assert pl.select(is_partial(pl.lit(flags))).to_series().to_list() == [True, False, False, False]


def test_tag_metadata_on_distinct_tags() -> None:
    tags = pl.DataFrame({"tag": [tag for tag, _ in TAGS]})
    named = tag_metadata(pl.col("tag"))
    assert tags.select(named["pod"], named["namespace"].alias("ns"), named["container"].alias("c")).rows() == [
        expected for _, expected in TAGS
    ]


def test_join_partials_joins_per_key_and_names_the_unfinished() -> None:
    frame = pl.DataFrame(
        {
            "row": [0, 1, 2, 3, 4, 5],
            "k": ["a", "b", "a", "a", "b", "a"],
            "line": ["x1", "y1", "x2", "z", "y2", "w"],
            "flag": [True, True, True, False, False, True],
            "n": [10, 11, 12, 13, 14, 15],
        }
    )
    joined, unfinished = join_partials(frame, "flag", ["k"], "|", aggs=[pl.col("n").sum()])
    assert joined.select("row", "k", "line", "flag", "n", "members").rows() == [
        (0, "a", "x1|x2|z", False, 35, [0, 2, 3]),
        (1, "b", "y1|y2", False, 25, [1, 4]),
        (5, "a", "w", True, 15, [5]),
    ]
    assert unfinished.to_list() == [5]
    whole, none = join_partials(frame.with_columns(pl.lit(False).alias("flag")), "flag", ["k"])
    assert whole["line"].to_list() == frame["line"].to_list() and whole["members"].null_count() == 6
    assert none.len() == 0
