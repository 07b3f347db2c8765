"""Where Kubernetes and collectors say which pod a line came from.

One place for what the file reader (``sources``), the unwrapper (``envelopes``) and the
forward receiver (``forward.records``) must read alike (``../shared/reference/input-streams.md``
§2, §3, §4, §7): which keys of a collector record hold the container's line, which are the
collector's own, what marks a record as a partial chunk and how the chunks are joined
(``join_partials``), how kubelet's node paths and a collector's tag (the tailed path with ``/``
turned into ``.``) and a Loki stream's labels name the pod, namespace and container. Three
copies of these had drifted apart (a ``/var/log/pods`` tag named a pod for one reader and not for the other).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

# --- collector records --------------------------------------------------------------------------

# The keys that may hold the container's line, first present wins (rule 8). Not `msg`: that is an
# app log's own field (Istio's JSON logs), a line, not a wrapper.
MESSAGE_KEYS = ("log", "message", "MESSAGE")
# The keys a collector adds around the line: a record without a message key (Fluent Bit
# ``Merge_Log``, a parser filter) is the line once these are taken out.
COLLECTOR_KEYS = ("date", "time", "stream", "_p", "logtag", "kubernetes", "docker", "tag")
# Where pod, namespace and container sit in a record's ``kubernetes`` map (fluentd's
# kubernetes_metadata filter, Fluent Bit's kubernetes filter).
KUBERNETES_KEYS = {"pod": "pod_name", "namespace": "namespace_name", "container": "container_name"}
# Where a stream's label set (Grafana Loki, what ``logcli`` prints) names them: the plain label first
# (promtail's and Alloy's Kubernetes discovery), then the collectors' ``*_name`` form (Fluent Bit's and
# fluentd's Loki outputs copy the ``kubernetes`` map's keys). First present wins.
LABEL_KEYS = {name: (name, key) for name, key in KUBERNETES_KEYS.items()}

# The CRI partial flag as collectors keep it: Fluent Bit's ``multiline.parser cri`` writes ``_p``,
# fluentd's parser-cri and Fluent Bit's old ``Parser cri`` write ``logtag``. First present wins.
PARTIAL_KEYS = ("_p", "logtag")
PARTIAL = "P"  # the line goes on in the next chunk of the same stream; ``F`` (or none) ends it


def record_partial(record: Mapping[Any, Any]) -> bool:
    """Whether a decoded record is a ``P`` chunk (its line goes on in the next record of its stream)."""
    for key in PARTIAL_KEYS:
        value = record.get(key)
        if value is not None:
            return bool(value == PARTIAL)
    return False


def is_partial(flag: pl.Expr) -> pl.Expr:
    """The same rule over a column of flags (``coalesce`` of ``PARTIAL_KEYS``, or a CRI line's tag); null is not."""
    return (flag == PARTIAL).fill_null(False)


def join_partials(
    frame: pl.DataFrame,
    flag: str,
    key: Sequence[str],
    sep: str = "",
    *,
    row: str = "row",
    members: str = "members",
    aggs: Sequence[pl.Expr] = (),
) -> tuple[pl.DataFrame, pl.Series]:
    """Join each run of rows flagged ``flag`` with the next row of the same ``key`` (P…P F → one row).

    The one joining of partial chunks, over whole frames: the unwrapper's (``envelopes``) and the
    forward receiver's (``forward.records``). ``frame`` holds ``line``, the boolean ``flag``, the
    ``key`` columns and ``row`` (distinct, ascending). A chain becomes one row at its first row's
    place: ``line`` joined with ``sep``, ``flag`` that of its last row (still set: the chain is
    unfinished, it may go on in the next frame), ``members`` the ``row`` values it was made of (null
    on rows not joined), ``aggs`` (expressions over the chain's rows) for the columns they name, the
    other columns from its first row. Returns that frame, sorted by ``row``, and the ``row`` values
    of the unfinished chains.
    """
    listed = pl.List(frame.schema[row])
    if not frame.select(pl.col(flag).any()).item():
        return frame.with_columns(pl.lit(None, dtype=listed).alias(members)), frame[row].clear()
    prev = "__prev"
    df = frame.with_columns(pl.col(flag).shift(1).over(key).fill_null(False).alias(prev))
    involved = pl.col(flag) | pl.col(prev)
    parts = df.filter(involved).with_columns((~pl.col(prev)).cum_sum().over(key).alias("__chain"))
    named = {e.meta.output_name() for e in aggs}
    special = {"line", flag, row, members, *key, *named}
    joined = parts.group_by([*key, "__chain"], maintain_order=True).agg(
        pl.col("line").str.join(sep),
        pl.col(flag).last(),
        pl.col(row).first(),
        pl.col(row).alias(members),
        *aggs,
        *(pl.col(c).first() for c in frame.columns if c not in special),
    )
    rest = df.lazy().filter(~involved).drop(prev).with_columns(pl.lit(None, dtype=listed).alias(members)).collect()
    out = pl.concat([rest, joined.select(rest.columns).cast(rest.schema)]).sort(row)  # type: ignore[arg-type]
    return out, joined.filter(pl.col(flag))[row]


# --- kubelet's node paths -----------------------------------------------------------------------

# /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log[.<date>[.gz]] and the symlinks
# /var/log/containers/<pod>_<ns>_<container>-<64 hex>.log. In a path `/` separates, so a pod
# name keeps its dots and a rotated file's suffix is allowed.
POD_DIR = re.compile(r"(?:^|/)(?P<namespace>[^/_]+)_(?P<pod>[^/_]+)_[0-9a-f-]{36}/(?P<container>[^/]+)/\d+\.log")
CONTAINER_LINK = re.compile(r"(?:^|/)(?P<pod>[^/_]+)_(?P<namespace>[^/_]+)_(?P<container>.+)-[0-9a-f]{64}\.log")


def path_metadata(path: str) -> dict[str, str]:
    """pod / namespace / container named by a Kubernetes node log path (empty for other paths)."""
    m = POD_DIR.search(path) or CONTAINER_LINK.search(path)
    return m.groupdict() if m else {}


# --- a collector's tag --------------------------------------------------------------------------

# fluentd (`tag kubernetes.*`) and Fluent Bit (`Tag kube.*`) tag a tailed file by its path with
# `/` turned into `.`, so in a tag a dot may separate or belong to a pod name. The layouts, in one
# regex (polars compiles it once; a name may appear once, hence the suffixed groups):
# * …containers.<pod>_<ns>_<container>-<64 hex>.log: anchored on `containers.`, the pod may hold dots;
# * <pod>_<ns>_<container>-<64 hex>.log without that anchor: the pod is the last dot-free part;
# * …pods.<ns>_<pod>_<uid>.<container>.<n>.log (a tail of /var/log/pods).
# The first two share their tail: at the position where `containers.` starts, the anchored
# branch is tried first, and no earlier position can match the bare one.
_LINK = (
    r"(?:^|[./])(?:containers[./](?P<pod>[a-z0-9][-a-z0-9.]*)|(?P<pod_bare>[a-z0-9][-a-z0-9]*))"
    r"_(?P<namespace>[^_./]+)_(?P<container>[^_]+)-[a-f0-9]{64}\.log$"
)
_PODS = (
    r"(?:^|[./])pods[./](?P<namespace_pods>[^_./]+)_(?P<pod_pods>[a-z0-9][-a-z0-9.]*)_[-a-f0-9]+[./]"
    r"(?P<container_pods>[^./]+)[./]\d+\.log$"
)
TAG = f"{_LINK}|{_PODS}"
_TAG_GROUPS = {
    "pod": ("pod", "pod_bare", "pod_pods"),
    "namespace": ("namespace", "namespace_pods"),
    "container": ("container", "container_pods"),
}


def tag_metadata(tag: pl.Expr) -> dict[str, pl.Expr]:
    """``pod``, ``namespace``, ``container`` named by a collector's tag (null where it names none).

    Expressions over the tag column, unaliased: the caller names them (and may run them on the
    distinct tags only: a stream holds few).
    """
    parts = tag.str.extract_groups(TAG).struct
    return {name: pl.coalesce(*(parts.field(g) for g in groups)) for name, groups in _TAG_GROUPS.items()}
