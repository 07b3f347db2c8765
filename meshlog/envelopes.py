"""Unwrap what carries the access lines: kubectl, stern, compose, Loki, CRI and docker files, fluentd, Fluent Bit.

A line is read through the layers a sidecar's output can pass, outermost first
(``../shared/reference/input-streams.md`` §1–4, §7):

0. ``jq .``: a JSON record printed over many lines (``{`` … ``}`` at column 0) is one line again;
1. the client: kubectl ``--prefix`` (``[pod/NAME/CONTAINER] ``), stern (``POD CONTAINER ``),
   docker compose (``SERVICE-1  | ``), kubetail (``[POD] ``, ``[POD CONTAINER] ``), kail
   (``NS/POD[CONTAINER]: ``), Grafana Loki's logcli (``TIME {LABELS} ``, ``--output=jsonl``);
2. kubelet or the runtime: kubectl ``--timestamps``, CRI files, docker json-file;
3. a collector: fluentd ``out_file`` / ``out_stdout``, Fluent Bit ``stdout`` (msgpack print,
   ``json_lines``), JSON records with ``log``/``message`` and ``kubernetes`` metadata;
4. layer 2 once more on what a collector carried (a misconfigured one keeps the CRI or docker
   wrapper inside ``log``), then Ambassador's ``ACCESS `` prefix.

Every layer is tried on every line, because streams mix: collectors print their own logs
between records, kubectl ``--ignore-errors`` inserts ``error:`` lines, files get concatenated.
A layer strips only what it recognises; a line no layer recognises passes unchanged. Only
the prefixing clients (stern, compose, kubetail, kail, logcli) are decided once per source,
from the first lines (their shapes are too loose to trust line by line: an access line may
hold `` | ``), and so is whether a collector's ``log`` values keep the container's ``\\n``
(then one without it is a chunk to join, as in docker's files). Records split over several
lines (pretty-printed JSON, CRI ``P`` chunks, docker chunks without ``\\n``, collector ``P``
records, Fluent Bit < 2.1 records broken by a raw newline) are joined; one that may go on in
the next chunk is held back until then. All of it is polars expressions over whole columns;
Python touches only the few lines of the kubectl ``--timestamps`` >16 KiB defect.

Each layer is a function ``DataFrame -> DataFrame`` (``pretty_json``, ``client``, ``logcli_jsonl``,
``cri``, ``kubectl_timestamps``, ``docker``, ``join_chunks``, ``fluentbit_lines``,
``collector_records``, ``collector_lines``, ``access_prefix``); the scratch columns they pass on
are listed in ``SCRATCH``. ``Unwrapper`` runs them and keeps what one chunk hands to the next.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from meshlog.errors import ConfigError
from meshlog.kubernetes import (
    COLLECTOR_KEYS,
    KUBERNETES_KEYS,
    LABEL_KEYS,
    MESSAGE_KEYS,
    PARTIAL_KEYS,
    is_partial,
    join_partials,
    tag_metadata,
)
from meshlog.parse.cast import DATETIME
from meshlog.parse.classify import OTHER_LINES

INPUTS = ("auto", "plain", "kubectl", "cri", "docker", "fluentd", "fluentbit")

# Wrapper names, outermost first: what ``Unwrapper.detected`` reports.
WRAPPERS = (
    "pretty-json",
    "kubectl-prefix",
    "stern",
    "compose",
    "kubetail",
    "kail",
    "logcli",
    "logcli-jsonl",
    "kubectl-timestamps",
    "cri",
    "docker",
    "fluentd-stdout",
    "fluentd-out_file",
    "fluentbit-msgpack",
    "fluentbit-json",
    "collector-json",
    "access-prefix",
)
_RUNTIME = frozenset({"kubectl-timestamps", "cri", "docker"})
_COLLECTOR = frozenset({"fluentd-stdout", "fluentd-out_file", "fluentbit-msgpack", "fluentbit-json", "collector-json"})
# What ``--input`` allows; ``access-prefix`` belongs to Envoy's line, not to a transport.
FAMILIES: dict[str, frozenset[str]] = {
    "auto": frozenset(WRAPPERS),
    "plain": frozenset(),
    "kubectl": frozenset({"kubectl-prefix", "kubectl-timestamps", "access-prefix"}),
    "cri": frozenset({"cri", "access-prefix"}),
    "docker": frozenset({"docker", "access-prefix"}),
    "fluentd": frozenset({"fluentd-stdout", "fluentd-out_file", "collector-json", "access-prefix"}),
    "fluentbit": frozenset({"fluentbit-msgpack", "fluentbit-json", "collector-json", "access-prefix"}),
}

# Columns a wrapper can fill, in the lines frame's order; a value already in the input wins.
META: dict[str, pl.DataType] = {
    "captured_at": DATETIME,
    "pod": pl.String(),
    "namespace": pl.String(),
    "container": pl.String(),
    "stream": pl.String(),
}
_W = {name: f"_e_{name}" for name in META}  # the wrappers' values while unwrapping

# The scratch columns of one run (``Unwrapper._run``): ``_e_*``, never given out. This is the
# protocol between the layer functions (each says in its docstring which of these it reads,
# sets and adds) and the Unwrapper, which reads ``_e_m`` for ``detected`` and takes
# ``_e_members`` into the map of joined rows. ``*`` ends a family written as a prefix.
SCRATCH: dict[str, str] = {
    # the whole run
    "_e_sample": "feed: the row is one of the source's first SAMPLE_LINES lines (what `detected` looks at)",
    "_e_row": "run: the row's place in the frame fed; a joined row keeps its first's (order, hold-back)",
    "_e_joined": "_join: physical lines merged into this row",
    "_e_inc": "_join, Fluent Bit lines: unfinished, may go on in the next frame (held back)",
    "_e_c": "collector_lines: the line came out of a collector record (layer 2 runs on it once more)",
    **{c: f"every layer: the {name} a wrapper gave (META; the input's own value wins)" for name, c in _W.items()},
    # between a layer and the Unwrapper
    "_e_m": "_head and every layer: the rows the layer just run unwrapped; the next layer writes it anew",
    "_e_x": "_head: the head regex's groups (`_h`: the whole head, cut off by `_rest`)",
    "_e_members": "_join: the input rows a joined row was made of (null on the others); `_harvest` takes it",
    # layers 0 and 1: jq's records, the clients (pretty_json, client, logcli_jsonl)
    "_e_pj": "pretty_json: a line and the indented lines after it (a record's body where the line is `{`)",
    "_e_pend": "pretty_json: the next line of the key is `}` (null: the frame ends first)",
    "_e_lj": "logcli_jsonl: an entry's line, timestamp and labels, decoded",
    # layer 2: kubelet and the runtime (runtime_columns … join_chunks)
    "_e_done": "layer 2: a runtime wrapper took the row (the next ones leave it alone)",
    "_e_partial": "layers 0, 2, 3: the line goes on in the next row of its key (`_join`)",
    "_e_strip": "layers 2, 3: the line still ends in the container's newline, cut after joining",
    "_e_via": "layer 2: which runtime wrapper took the row (chunks join within one)",
    "_e_dlog": "docker: the decoded `log`",
    "_e_dstream": "docker: the decoded `stream`",
    "_e_dtime": "docker: the decoded `time`",
    # inside _join and the Fluent Bit line joining
    "_e_cont": "Fluent Bit lines: the row goes on the record a line above began",
    "_e_closed": "Fluent Bit lines: the row ends in `}]`",
    "_e_fb": "Fluent Bit lines: a record's first line and its rest",
    # layer 3: collector records (collector_records … collector_lines; _RECORD_COLUMNS)
    "_e_kind": "layer 3: the collector wrapper of a record (null: no record, or one not allowed)",
    "_e_rec": "layer 3: the record's JSON text",
    "_e_tag": "layer 3: the record's tag (fluentd's TAG column, Fluent Bit's `[N] TAG:`, a `tag` key)",
    "_e_otime": "layer 3: the time the collector printed before the record",
    "_e_msg": "layer 3: the record's line (`MESSAGE_KEYS`, first present)",
    "_e_haslog": "layer 3: the line came as `log` (which may keep the container's newline)",
    "_e_rstream": "layer 3: the record's `stream`",
    "_e_rtime": "layer 3: the record's `time`",
    "_e_rdate": "layer 3: the record's `date` (Fluent Bit json_lines)",
    "_e_rp": "layer 3: the record's partial flag (`PARTIAL_KEYS`, first present)",
    "_e_p_key": "layer 3: that flag came as `_p` (Fluent Bit), not `logtag`",
    "_e_kpod": "layer 3: the pod its `kubernetes` map, else its tag, names",
    "_e_kns": "layer 3: the namespace its `kubernetes` map, else its tag, names",
    "_e_kcont": "layer 3: the container its `kubernetes` map, else its tag, names",
    "_e_kpod_tag": "_from_tag: the pod the tag names",
    "_e_kns_tag": "_from_tag: the namespace the tag names",
    "_e_kcont_tag": "_from_tag: the container the tag names",
    "_e_strong": "layer 3: keys only a collector writes (`kubernetes`, `docker`, `_p`, `logtag`, `date`)",
    "_e_merged": "layer 3: a record without a message key, less the collector's keys (Merge_Log)",
    "_e_j*": "_decode_records: each key it decodes (`_PATHS`)",
}

SAMPLE_LINES = 50  # non-blank lines that decide the client (stern, compose, …) and what ``detected`` reports
SAMPLE_SCAN = 5000  # rows of a frame looked at for them
CRI_CHUNK = 16384  # containerd's max_container_log_line_size (default), docker's 16 KiB
HOLD_ROWS = 10_000  # a partial record further back than this is let out as it is, never held forever

# --- the byte formats (input-streams.md) ---------------------------------------------------------

_TS_ANY = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)"
_TS9 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d)"
_DNS_NAME = r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"

# Each rule matches a line's *head* only (named groups, the whole match is cut off): a regex
# that captured the rest of the line as well would cost ten times as much on long lines.
PREFIX = r"^\[pod/(?P<pod>[^/\]\s]+)/(?P<container>[^/\]\s]+)\] "
# Colours: SGR sequences (fatih/color in stern, kail, logcli; compose) and `tput sgr0`'s `ESC ( B` (kubetail).
ANSI = r"\x1b\[[0-9;]*m|\x1b\(B"
# kubectl --timestamps: kubelet's RFC3339NanoFixed (9 digits), also RFC 3339 with fewer digits or none
# and an offset (`2021-02-01T21:34:35+00:00`). The stamps #77603 repeats inside a >16 KiB line are
# kubelet's own, so those are cut only in the 9-digit form.
TIMESTAMPS = rf"^(?P<ts>{_TS_ANY}) "
# A line's own timestamp then its level, as a log line copied from a terminal reads (ztunnel's, with
# its TABs turned to spaces): kubectl's --timestamps prefix is followed by the container's line,
# never straight by a level, so such a line is not unwrapped.
OWN_TIMESTAMP = rf"^{_TS_ANY}[ \t]+(?i:trace|debug|info|warn|warning|error|critical|fatal)[ \t]"
_TS9_SPACE = re.compile(rf"{_TS9} ".encode())
CRI = rf"^(?P<ts>{_TS_ANY}) (?P<stream>stdout|stderr) (?P<tag>[FP])(?::\S*)?(?: |$)"

# The prefixing clients, decided once per source from the first lines (``client_pattern``), ANSI
# colours taken out first. docker compose v2 (cmd/formatter/logs.go): `%-{W}s | `, W one more than
# the longest name so far (`SERVICE-N`, or a container_name); docker-compose v1 (compose/cli/
# log_printer.py): the name (`SERVICE_N`) padded to the longest service + 3, then ` | `. So two spaces
# or more before the bar in the first lines; then `--timestamps`' RFC 3339 time.
_COMPOSE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
COMPOSE = rf"^(?P<container>{_COMPOSE_NAME}) +\|(?: |$)(?:(?P<ts>{_TS_ANY}) )?"
_COMPOSE_HEAD = rf"^({_COMPOSE_NAME}  +\|)(?: |$)"
# kubetail (the script): `[POD] ` (one container a pod) or `[POD CONTAINER] `; `N:` before the name
# with --show-color-index.
KUBETAIL = rf"^\[(?:\d+:)?(?P<pod>{_DNS_NAME})(?: (?P<container>{_DNS_LABEL}))?\] "
# The clients' own lines before the prefixed ones (never deciding): kubetail's `Will tail N logs...`
# and the names, one a line; docker-compose's `Attaching to …`.
_CLIENT_OWN = rf"^Will tail \d+ logs?\.\.\.$|^(?:\d+:)?{_DNS_NAME}(?: {_DNS_LABEL})?$|^Attaching to "
# kail (writers/default.go): `NS/POD[CONTAINER]: `.
KAIL = rf"^(?P<namespace>{_DNS_LABEL})/(?P<pod>{_DNS_NAME})\[(?P<container>{_DNS_LABEL})\]: "
# logcli query, default output (pkg/logcli/output/default.go): RFC 3339 seconds in --timezone, the
# stream's labels less those common to all (`{a="x", b="y"}`: sorted, Go-quoted, padded), the line.
_LABEL_SET = r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}'
LOGCLI = rf"^(?P<ts>{_TS_ANY}) (?P<labels>{_LABEL_SET})(?: +|$)"
# logcli --output=jsonl (jsonl.go): a Go map, keys sorted, `{"labels":{…},"line":"…","timestamp":"…"}`
# (no `labels` with --no-labels); `jq .` of it (joined by ``pretty_json``) keeps that order.
LOGCLI_JSONL = r'^\{"(?:labels"\s*:\s*\{|line"\s*:\s*")'
_STERN_SHORT = r"(?:\d\d-\d\d \d\d:\d\d:\d\d )?"  # stern --timestamps=short: no year, taken off only
CLIENT_SHARE = 0.8  # of the first lines must carry a client's prefix
CLIENT_LINES = 10  # first lines that, none of the clients' prefixes on most, decide there is none
PRETTY_LINES = 1000  # a pretty-printed JSON record longer than this is let out as it is

FLUENTD_STDOUT = r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [+-]\d{4}) (?P<tag>[^\[\s]\S*): "
FLUENTD_OUT_FILE = r"^(?:(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[^\t]*)\t)?(?P<tag>[^\t\s\[{]+)\t"
_LEVELS = r"(?i)^(?:trace|debug|info|warn|warning|error|fatal|critical)$"  # a log line's 2nd column, not a tag
FLUENTBIT_START = r"^\[\d+\] \S+: \["
FLUENTBIT = r"^\[\d+\] (?P<tag>\S+): \[(?:\[(?P<t1>\d+\.\d+), \{[^{}]*\}\]|(?P<t2>\d+\.\d+)), \{"
# Fluent Bit prints strings raw: a value ends where the next known key begins, or at the end.
_FB_NEXT_KEY = r'", "(?:stream|time|_p|logtag|kubernetes|docker|date|log|message|tag)"=>'

# Collectors' own output in the same stream (input-streams.md §3.2, §4.2): never a record.
SELF_LOG = "|".join(p for kind, p in OTHER_LINES if kind in ("fluentd-log", "fluentbit-log"))

_RECORD_HINT = r'"(?:log|message|MESSAGE|kubernetes|docker|_p|logtag|date)"\s*:'
_S = pl.String()
_TEXT_KEYS = tuple(k for k in COLLECTOR_KEYS if k not in ("kubernetes", "docker"))  # string-valued ones
RECORD = pl.Struct(
    {
        **{k: _S for k in MESSAGE_KEYS},
        **{k: _S for k in _TEXT_KEYS},
        "kubernetes": pl.Struct(
            {
                **{k: _S for k in KUBERNETES_KEYS.values()},
                "pod": pl.Struct({"name": _S}),  # Beats' layout
                "namespace": _S,
                "container": pl.Struct({"name": _S}),
            }
        ),
        "docker": pl.Struct({"container_id": _S}),
    }
)
_PATHS = {
    **{k: f"$.{k}" for k in (*MESSAGE_KEYS, *COLLECTOR_KEYS)},
    **{k: f"$.kubernetes.{k}" for k in KUBERNETES_KEYS.values()},
    "pod": "$.kubernetes.pod.name",
    "namespace": "$.kubernetes.namespace",
    "container": "$.kubernetes.container.name",
}


def _json_object(depth: int) -> str:
    """A regex for a JSON object nested up to ``depth`` deep (strings may hold braces)."""
    string = r'"(?:[^"\\]|\\.)*"'
    inner = rf'[^{{}}"]|{string}' + (f"|{_json_object(depth - 1)}" if depth > 1 else "")
    return rf"\{{(?:{inner})*\}}"


_JSON_VALUE = rf'(?:"(?:[^"\\]|\\.)*"|{_json_object(5)}|\[[^\[\]]*\]|[-+0-9.eE]+|true|false|null)'
_DROP_KEYS = rf'"(?:{"|".join(COLLECTOR_KEYS)})"\s*:\s*{_JSON_VALUE}\s*,?\s*'

# --- the unwrapper ------------------------------------------------------------------------------


class Unwrapper:
    """Stateful per source: detects the wrapper(s) from the first lines fed, then unwraps every chunk.

    ``feed`` takes a lines frame (``source, line_no, line`` and any other columns, e.g.
    ``pod`` from a file path) and returns one row per *logical* line, ``line_no`` being
    the physical line where it starts, plus ``captured_at, pod, namespace, container,
    stream`` where a wrapper said so (a non-null input value wins). A column, once
    given, is given in every later frame. ``flush`` returns what was held back at EOF.
    ``joined`` counts physical lines merged into others, so that
    ``physical lines == logical lines + joined``.

    The unwrapping itself is the layer functions below (``DataFrame -> DataFrame``); this class
    holds only what one chunk hands to the next: the rows held back, the client and keeps-newline
    decisions, the sample counted so far, the wrappers seen and the columns given.
    """

    def __init__(self, forced: str | None = None) -> None:
        mode = forced or "auto"
        if mode not in INPUTS:
            raise ConfigError(f"--input must be one of {', '.join(INPUTS)} (got {forced!r})")
        self.input = mode
        self.joined = 0
        self._allowed = FAMILIES[mode]
        self._held: pl.DataFrame | None = None
        self._sampled = 0
        self._seen: dict[str, int] = {}
        self._client: tuple[str, str] | None = None  # the prefixing client (wrapper, head regex), once detected
        self._client_decided = mode != "auto"
        self._first: list[str] = []  # the sample lines the client is decided on, until it is
        self._keeps_newline: bool | None = None  # do this source's collector `log` values end in \n?
        self._added: list[str] = []  # wrapper columns given so far
        self._empty: pl.DataFrame = pl.DataFrame(schema={"source": _S, "line_no": pl.Int64(), "line": _S})

    @property
    def detected(self) -> list[str]:
        """Names of the wrappers in use (those that carried any of the first lines), outermost first."""
        return sorted(self._seen, key=lambda n: (self._seen[n], WRAPPERS.index(n)))

    def feed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Unwrap one lines frame; a record that may go on in the next frame is held back."""
        frame = self._mark_sample(frame)
        if not self._client_decided:
            self._decide_client(frame)
        if self._held is not None:
            frame = pl.concat([self._held, frame], how="vertical_relaxed")
            self._held = None
        out, rest = self._run(frame, final=False)
        self._held = rest if rest.height else None
        return self._finish(out, frame)

    def flush(self) -> pl.DataFrame:
        """At EOF: the records held back, as they are."""
        if self._held is None:
            return self._empty
        frame, self._held = self._held, None
        out, _ = self._run(frame, final=True)
        return self._finish(out, frame)

    # --- per feed ---

    def _mark_sample(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Flag the first ``SAMPLE_LINES`` non-blank lines (collectors' own logs aside) of the source."""
        rows = 0
        if self._sampled < SAMPLE_LINES:  # look at the head only: the frame may hold millions of lines
            head = frame.head(SAMPLE_SCAN)["line"]
            counts = ((head.str.strip_chars() != "") & ~head.str.contains(SELF_LOG)).cum_sum()
            rows = int((counts + self._sampled <= SAMPLE_LINES).sum())
            self._sampled += int(counts[min(rows, head.len()) - 1]) if rows else 0
            if rows == head.len() == SAMPLE_SCAN:
                self._sampled = SAMPLE_LINES  # thousands of blank lines: enough looking
        return frame.with_columns((pl.int_range(pl.len()) < rows).alias("_e_sample"))

    def _decide_client(self, frame: pl.DataFrame) -> None:
        """Decided once, on the sample lines so far that are not blank, a collector's own log or a client's.

        A client found on them decides; none found decides only on ``CLIENT_LINES`` of them, or when
        the sample is complete (a first frame of a line or two decides nothing yet).
        """
        line = pl.col("line")
        sample = frame.head(SAMPLE_SCAN).filter(pl.col("_e_sample")).select(line.str.replace_all(ANSI, ""))
        own = line.str.contains(SELF_LOG) | line.str.contains(_CLIENT_OWN)
        self._first += sample.filter((line.str.strip_chars() != "") & ~own)["line"].to_list()
        if self._first:
            self._client = client_pattern(pl.Series(self._first, dtype=pl.String))
        if self._client is not None or len(self._first) >= CLIENT_LINES or self._sampled >= SAMPLE_LINES:
            self._client_decided, self._first = True, []

    def _run(self, frame: pl.DataFrame, *, final: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Unwrap ``frame`` through the layers: the rows to give out now, and the input rows to hold back."""
        members: dict[int, list[int]] = {}  # a joined row → the rows it was made of
        df = frame.with_row_index("_e_row").with_columns(
            pl.col("_e_row").cast(pl.Int64),
            pl.lit(0, dtype=pl.Int64).alias("_e_joined"),
            pl.lit(False).alias("_e_inc"),
            pl.lit(False).alias("_e_c"),
            *(pl.lit(None, dtype=dtype).alias(_W[name]) for name, dtype in META.items()),
        )
        allowed = self._allowed
        if allowed and (self._client or _any(df, pl.col("line").str.contains(_ANY_HEAD))):
            df = self._clients(df, members, final=final)
            df = self._runtime(df, members, stage=1, scope=None)
            df = self._collector(df, members, final=final)
            if _any(df, pl.col("_e_c")):
                df = self._runtime(df, members, stage=3, scope=pl.col("_e_c"))
            if "access-prefix" in allowed:
                df = self._noted(access_prefix(df), "access-prefix", 4)
        out, rest = df, frame.clear()
        fresh = pl.col("_e_inc") & (pl.col("_e_row") >= frame.height - HOLD_ROWS)  # older: let out as it is
        unfinished = pl.Series(dtype=pl.Int64) if final else df.filter(fresh)["_e_row"]
        if unfinished.len():
            out = df.filter(~pl.col("_e_row").is_in(unfinished.implode()))
            rest = frame[_members_of(unfinished.to_list(), members)]
        self.joined += int(out["_e_joined"].sum() or 0)
        return out, rest

    def _finish(self, out: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
        """The lines frame: input columns (wrapper values fill their nulls), wrapper columns, ``line`` last."""
        given = [c for c in frame.columns if not c.startswith("_e_")]
        for name in META:
            if name not in given and name not in self._added and out[_W[name]].null_count() < out.height:
                self._added.append(name)
        columns = [
            pl.coalesce(pl.col(c), pl.col(_W[c])).cast(META[c]).alias(c) if c in META else pl.col(c)
            for c in given
            if c != "line"
        ]
        columns += [pl.col(_W[c]).alias(c) for c in META if c in self._added and c not in given]
        result = out.select(*columns, pl.col("line"))
        self._empty = result.clear()
        return result

    # --- which layers run, and what they tell ---

    def _note(self, df: pl.DataFrame, name: str, stage: int, matched: pl.Expr) -> None:
        """Remember a wrapper that carried one of the sample lines (``detected``), with the stage it was found at."""
        if name not in self._seen and _any(df, matched & pl.col("_e_sample")):
            self._seen[name] = stage

    def _noted(self, df: pl.DataFrame, name: str, stage: int) -> pl.DataFrame:
        """A layer's output, its rows unwrapped (``_e_m``) noted; the next layer writes ``_e_m`` anew."""
        self._note(df, name, stage, pl.col("_e_m"))
        return df

    def _clients(self, df: pl.DataFrame, members: dict[int, list[int]], *, final: bool) -> pl.DataFrame:
        """Layers 0 and 1: ``jq .``'s records joined, then the client's prefix (decided) or kubectl's."""
        line, allowed, found = pl.col("line"), self._allowed, self._client
        if "pretty-json" in allowed and _any(df, line == "{"):
            df = _harvest(self._noted(pretty_json(df, final=final), "pretty-json", 0), members)
            if found is None and "logcli-jsonl" in allowed:  # `logcli … -o jsonl | jq .`
                df = self._noted(logcli_jsonl(df, pl.col("_e_m")), "logcli-jsonl", 0)
        if found is not None:
            name, pattern = found
            unwrapped = logcli_jsonl(df, pl.lit(True)) if name == "logcli-jsonl" else client(df, pattern, ansi=True)
            df = self._noted(unwrapped, name, 0)
        elif "kubectl-prefix" in allowed and _any(df, line.str.starts_with("[pod/")):
            df = self._noted(client(df, PREFIX), "kubectl-prefix", 0)
        return df

    def _runtime(
        self, df: pl.DataFrame, members: dict[int, list[int]], *, stage: int, scope: pl.Expr | None
    ) -> pl.DataFrame:
        """Layer 2 (stage 1), or again inside collector records (stage 3): kubelet's and the runtime's wrappers."""
        allowed = self._allowed | (_RUNTIME if stage == 3 and self._allowed & _COLLECTOR else frozenset())
        inside = pl.lit(True) if scope is None else scope
        df = runtime_columns(df)
        if "cri" in allowed:
            df = self._noted(cri(df, inside), "cri", stage)
        if "kubectl-timestamps" in allowed:
            df = self._noted(kubectl_timestamps(df, inside), "kubectl-timestamps", stage)
        if "docker" in allowed:
            df = self._noted(docker(df, inside), "docker", stage)
        return _harvest(join_chunks(df), members)

    def _collector(self, df: pl.DataFrame, members: dict[int, list[int]], *, final: bool) -> pl.DataFrame:
        """Layer 3: collector records; decides once whether this source's ``log`` values keep their ``\\n``."""
        line, allowed = pl.col("line"), self._allowed
        maybe = line.str.contains(r"^(?:\[\d+\] |\d{4}-\d\d-\d\d \d\d:|\{)") | line.str.contains("\t{", literal=True)
        if not allowed & _COLLECTOR or not _any(df, maybe):
            return df
        if "fluentbit-msgpack" in allowed and _any(df, line.str.contains(FLUENTBIT_START)):
            df = _harvest(fluentbit_lines(df, final=final), members)
        df = collector_records(df, allowed)
        for name in ("fluentd-stdout", "fluentd-out_file", "fluentbit-msgpack", "fluentbit-json", "collector-json"):
            self._note(df, name, 2, pl.col("_e_kind") == name)
        if not _any(df, pl.col("_e_kind").is_not_null()):
            return df.drop(*_RECORD_COLUMNS)
        if self._keeps_newline is None:
            self._keeps_newline = keeps_newline(df)
        return _harvest(collector_lines(df, keeps_newline=bool(self._keeps_newline)), members)


# --- the layers: DataFrame -> DataFrame ----------------------------------------------------------
# Each reads ``line`` and the scratch columns its docstring names (``SCRATCH``), and leaves
# ``_e_m`` (the rows it unwrapped, for ``detected``) or ``_e_members`` (rows it joined) for the
# Unwrapper to take.


def stern_pattern(sample: pl.Series) -> str | None:
    """The stern head regex for these lines (ANSI colours off), or None: they are not stern's.

    stern's 2nd (or, with ``--all-namespaces``, 3rd) column is one constant container name,
    in at least 80% of the lines; its shape is too loose to trust line by line.
    """
    cols = sample.to_frame("line").select(
        pl.col("line")
        .str.extract_groups(rf"^(?P<a>{_DNS_NAME}) (?P<b>{_DNS_NAME}) (?:(?P<c>{_DNS_LABEL}) )?")
        .struct.unnest()
    )
    best: tuple[float, str, str] | None = None
    for column, pattern in (
        ("b", rf"^(?P<pod>{_DNS_NAME}) {{c}} {_STERN_SHORT}"),
        ("c", rf"^(?P<namespace>{_DNS_LABEL}) (?P<pod>{_DNS_NAME}) {{c}} {_STERN_SHORT}"),
    ):
        values = cols[column].drop_nulls()
        if not values.len():
            continue
        top, count = values.value_counts(sort=True).row(0)
        share = count / sample.len()
        clear = re.fullmatch(_DNS_LABEL, top) and share >= 0.8 and (count >= 3 or top == "istio-proxy")
        if clear and (best is None or share > best[0]):
            best = (share, top, pattern)
    return None if best is None else best[2].replace("{c}", f"(?P<container>{re.escape(best[1])})")


def client_pattern(sample: pl.Series) -> tuple[str, str] | None:
    """Which client wrote these first lines (ANSI colours off): (its wrapper name, its head regex), or None.

    Most of them (``CLIENT_SHARE``) must carry its prefix: stern a constant container column
    (``stern_pattern``); compose a name, two spaces or more and ``| ``, at one width on most
    (the width grows when a container with a longer name starts later, so not on all); kubetail
    a pod name with a letter (``[1719556870] `` is a custom access format's time); kail, logcli
    and logcli's JSON lines (``LOGCLI_JSONL``, what its lines start with) their shapes. An access
    line holding `` | `` is no compose line: one line never decides.
    """
    stern = stern_pattern(sample)
    if stern is not None:
        return "stern", stern
    n = sample.len()
    bars = sample.str.extract(_COMPOSE_HEAD, 1).drop_nulls()
    if bars.len() >= CLIENT_SHARE * n and int(bars.str.len_chars().value_counts(sort=True)["count"][0]) >= n / 2:
        return "compose", COMPOSE
    pods = sample.str.extract(KUBETAIL, 1)
    if int(pods.str.contains("[a-z]").sum()) >= CLIENT_SHARE * n:
        return "kubetail", KUBETAIL
    for name, pattern in (("kail", KAIL), ("logcli", LOGCLI), ("logcli-jsonl", LOGCLI_JSONL)):
        if int(sample.str.contains(pattern).sum()) >= CLIENT_SHARE * n:
            return name, pattern
    return None


def client(df: pl.DataFrame, pattern: str, *, ansi: bool = False) -> pl.DataFrame:
    """Layer 1, a client's prefix: kubectl ``--prefix`` (``PREFIX``) or the one ``client_pattern`` found.

    Reads ``line`` (ANSI colours taken out first when ``ansi``). Sets ``line`` and, from the
    pattern's groups, ``_e_pod``, ``_e_namespace``, ``_e_container`` (or from a ``labels`` group:
    logcli's label set, ``LABEL_KEYS``) and ``_e_captured_at`` (a ``ts`` group). Adds ``_e_m``.
    """
    if ansi:
        df = df.with_columns(pl.col("line").str.replace_all(ANSI, ""))
    groups = re.compile(pattern).groupindex
    df = _head(df, pattern, pl.lit(True))
    x = pl.col("_e_x").struct
    named = {g: x.field(g) for g in ("pod", "namespace", "container") if g in groups}
    if "labels" in groups:
        named = {name: _label(x.field("labels"), keys) for name, keys in LABEL_KEYS.items()}
    sets = [_when(pl.col(_W[g]), value) for g, value in named.items()]
    if "ts" in groups:
        sets.append(_when(pl.col("_e_captured_at"), _rfc3339(x.field("ts"))))
    return df.lazy().with_columns(_when(pl.col("line"), _rest()), *sets).drop("_e_x").collect()


def pretty_json(df: pl.DataFrame, *, final: bool) -> pl.DataFrame:
    """Layer 0, ``jq .``'s records: a line ``{``, indented lines, a line ``}`` become one line, indents off.

    A JSON string holds no raw newline, so every line break is between tokens: the lines join
    without one. A record of ``PRETTY_LINES`` lines or more, or broken by a line that is not
    indented before its ``}``, is not joined (its lines come out as they are, nothing after them
    swallowed); one still open at the end of the frame may close in the next, unless ``final``.
    Reads ``line``. Sets ``line``. Adds ``_e_m`` (the joined rows), ``_e_members`` where it joined,
    ``_e_inc`` where a record is still open.
    """
    line, key = pl.col("line"), _key(df)
    inner = line.str.starts_with(" ") | line.str.starts_with("\t")
    df = df.with_columns(
        (~inner).cum_sum().over(key).alias("_e_pj"), (line == "}").shift(-1).over(key).alias("_e_pend")
    )
    body = [*key, "_e_pj"]
    record = (line.first() == "{").over(body) & (pl.len().over(body) < PRETTY_LINES)
    closes = pl.col("_e_pend").last().over(body).fill_null(not final)  # null: the frame ended inside it
    df = df.with_columns((record & closes).fill_null(False).alias("_e_partial"))
    df = df.with_columns(_when(line, line.str.strip_chars_start(" \t"), pl.col("_e_partial") & inner))
    df = _join(df.drop("_e_pj", "_e_pend"), "_e_partial", "", key)
    joined = pl.col("_e_members").is_not_null() if "_e_members" in df.columns else pl.lit(False)
    return df.with_columns(joined.alias("_e_m")).drop("_e_partial")


def logcli_jsonl(df: pl.DataFrame, scope: pl.Expr) -> pl.DataFrame:
    """Layer 1, ``logcli query --output=jsonl`` among the rows ``scope`` selects: each entry's line, time, labels.

    Reads ``line``. Sets ``line``, ``_e_captured_at`` (the entry's timestamp), ``_e_pod``,
    ``_e_namespace``, ``_e_container`` (the labels, ``LABEL_KEYS``). Adds ``_e_m``.
    """
    df = df.with_columns((scope & pl.col("line").str.contains(LOGCLI_JSONL)).fill_null(False).alias("_e_m"))
    return _patch(df, pl.col("_e_m"), _logcli_entries)


def runtime_columns(df: pl.DataFrame) -> pl.DataFrame:
    """Layer 2's own columns, fresh: ``_e_done``, ``_e_partial``, ``_e_strip`` (False), ``_e_via`` (null)."""
    return df.with_columns(
        pl.lit(False).alias("_e_done"),
        pl.lit(False).alias("_e_partial"),
        pl.lit(False).alias("_e_strip"),
        pl.lit(None, dtype=_S).alias("_e_via"),
    )


def cri(df: pl.DataFrame, scope: pl.Expr) -> pl.DataFrame:
    """CRI file lines (containerd, CRI-O) among the rows ``scope`` selects: time, stream, the ``P`` flag.

    Reads ``line``. Sets ``line``, ``_e_captured_at``, ``_e_stream``, ``_e_partial``, ``_e_done``,
    ``_e_via`` (``cri``). Adds ``_e_m``.
    """
    # No gate before a head regex: anchored, it fails at a line's first bytes when it fails.
    df = _head(df, CRI, scope)
    if not _any(df, pl.col("_e_m")):
        return df.drop("_e_x")
    x = pl.col("_e_x").struct
    return (
        df.lazy()
        .with_columns(
            _when(pl.col("line"), _rest()),
            _when(pl.col("_e_captured_at"), _rfc3339(x.field("ts"))),
            _when(pl.col("_e_stream"), x.field("stream")),
            (pl.col("_e_m") & is_partial(x.field("tag"))).alias("_e_partial"),
            pl.col("_e_m").alias("_e_done"),
            pl.when(pl.col("_e_m")).then(pl.lit("cri")).alias("_e_via"),
        )
        .drop("_e_x")
        .collect()
    )


def kubectl_timestamps(df: pl.DataFrame, scope: pl.Expr) -> pl.DataFrame:
    """kubectl ``--timestamps`` among the rows ``scope`` selects and no other runtime wrapper took.

    Reads ``line``, ``_e_done``. Sets ``line`` (kubernetes#77603's stray timestamps cut out),
    ``_e_captured_at``, ``_e_done``. Adds ``_e_m``.
    """
    line = pl.col("line")
    df = _head(df, TIMESTAMPS, scope & ~pl.col("_e_done"))
    if not _any(df, pl.col("_e_m")):
        return df.drop("_e_x")
    x = pl.col("_e_x").struct
    # `--input kubectl`: a CRI line stays whole; a log line with its own time and level is no prefix
    df = df.with_columns(pl.col("_e_m") & ~line.str.contains(CRI) & ~line.str.contains(OWN_TIMESTAMP))
    df = df.with_columns(
        _when(line, _rest()),
        _when(pl.col("_e_captured_at"), _rfc3339(x.field("ts"))),
        (pl.col("_e_done") | pl.col("_e_m")).alias("_e_done"),
    )
    return _patch(df, pl.col("_e_m") & (line.str.len_bytes() > CRI_CHUNK), _cut_split_timestamps).drop("_e_x")


def docker(df: pl.DataFrame, scope: pl.Expr) -> pl.DataFrame:
    """docker json-file lines among the rows ``scope`` selects and no other runtime wrapper took.

    Reads ``line``, ``_e_done``. Sets ``line`` (``log``, its ``\\n`` still on), ``_e_captured_at``,
    ``_e_stream``, ``_e_partial`` (no ``\\n``: goes on), ``_e_strip``, ``_e_via`` (``docker``). Adds ``_e_m``.
    """
    # moby writes `{"log":…,"stream":…[,"attrs":{…}],"time":…}`, compact; a collector's record ends
    # in its metadata instead (`…}}`) or lacks the stream.
    line = pl.col("line")
    shaped = line.str.starts_with('{"log":"') & line.str.ends_with('"}')
    shaped = shaped & line.str.contains('","stream":"', literal=True) & line.str.contains('","time":"', literal=True)
    df = df.with_columns((scope & ~pl.col("_e_done") & shaped).fill_null(False).alias("_e_m"))
    return _patch(df, pl.col("_e_m"), _docker)  # sets `_e_m` to the rows it could decode


def join_chunks(df: pl.DataFrame) -> pl.DataFrame:
    """Layer 2's chunks joined: a ``P`` row with the next row of its key and wrapper, then ``\\n`` stripped.

    Reads ``_e_partial``, ``_e_via``, ``_e_strip`` and the key (``_key``). Drops layer 2's columns.
    Adds ``_e_members`` where it joined.
    """
    df = _join(df, "_e_partial", "", [*_key(df), "_e_via"])  # a P goes on in the same wrapper
    return _strip_newline(df, "_e_done", "_e_partial", "_e_via", "_e_m")


def fluentbit_lines(df: pl.DataFrame, *, final: bool) -> pl.DataFrame:
    """Fluent Bit msgpack prints broken over lines by a raw ``\\n`` in a string, joined back (with ``\\n``).

    A record still open at the end of the chunk may close in the next one, unless ``final``.
    Reads ``line``; adds ``_e_members`` where it joined, ``_e_inc`` where a record is still open.
    """
    return _join_fluentbit_lines(df, _key(df), final)


def collector_records(df: pl.DataFrame, allowed: frozenset[str]) -> pl.DataFrame:
    """Layer 3: which rows are collector records, of which kind, and what each record says.

    Reads ``line``. Adds ``_e_kind`` (a wrapper in ``allowed``; null for a row that is no
    record) and the record's fields (``_RECORD_COLUMNS``): ``_e_msg`` the line it carries,
    ``_e_kpod``/``_e_kns``/``_e_kcont`` from its ``kubernetes`` map or else its tag, …
    """
    line = pl.col("line")
    df = df.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in _RECORD_COLUMNS.items())
    free = pl.col("_e_kind").is_null()

    if "fluentd-stdout" in allowed and _any(df, line.str.contains(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.\d]* [+-]")):
        df = _take_record(_head(df, FLUENTD_STDOUT, pl.lit(True)), "fluentd-stdout")
    if "fluentd-out_file" in allowed and _any(df, free & line.str.contains("\t{", literal=True)):
        df = _head(df, FLUENTD_OUT_FILE, free)
        x = pl.col("_e_x").struct
        tag_ok = ~x.field("tag").str.contains(_LEVELS) & (
            x.field("time").is_not_null() | x.field("tag").str.contains(".", literal=True)
        )
        df = _take_record(df.with_columns(pl.col("_e_m") & tag_ok.fill_null(False)), "fluentd-out_file")
    if "fluentbit-msgpack" in allowed and _any(df, free & line.str.contains(FLUENTBIT_START)):
        closed = line.str.contains(FLUENTBIT_START) & line.str.ends_with("}]")  # an open one is held back
        df = _patch(df, free & closed, _fluentbit_msgpack)
    if allowed & {"fluentbit-json", "collector-json"}:
        bare = free & line.str.starts_with("{") & line.str.ends_with("}") & line.str.contains(_RECORD_HINT)
        df = df.with_columns(_when(pl.col("_e_rec"), line, bare), _when(pl.col("_e_kind"), pl.lit("json"), bare))
    df = _patch(df, pl.col("_e_rec").is_not_null(), _decode_records)

    kind = pl.col("_e_kind")
    has_msg = pl.col("_e_msg").is_not_null()
    fluentd = kind.is_in(["fluentd-stdout", "fluentd-out_file"])  # a record, whatever its keys
    strong = pl.col("_e_strong").fill_null(False)
    is_record = fluentd | (has_msg & (strong | pl.col("_e_rstream").is_not_null())) | (~has_msg & strong)
    is_record = kind.is_not_null() & is_record
    fluentbit = pl.col("_e_rdate").is_not_null() | (pl.col("_e_rp").is_not_null() & pl.col("_e_p_key"))
    named = pl.when(kind != "json").then(kind).when(fluentbit).then(pl.lit("fluentbit-json"))
    df = df.with_columns(
        pl.when(is_record.fill_null(False)).then(named.otherwise(pl.lit("collector-json"))).alias("_e_kind")
    )
    df = df.with_columns(pl.when(kind.is_in(list(allowed))).then(kind).alias("_e_kind"))
    taken = kind.is_not_null()
    df = _patch(df, taken & ~has_msg & pl.col("_e_rec").is_not_null(), _merged_record)
    return _patch(df, taken & pl.col("_e_tag").is_not_null(), _from_tag)


def keeps_newline(df: pl.DataFrame) -> bool | None:
    """Do this source's collector ``log`` values end in the container's ``\\n`` (most of them)? None: no sign yet.

    Then a ``log`` without one is a chunk that goes on, as in docker's files. Reads
    ``_e_kind``, ``_e_haslog``, ``_e_rp``, ``_e_msg``.
    """
    plain = pl.col("_e_kind").is_not_null() & pl.col("_e_haslog") & pl.col("_e_rp").is_null()
    if not _any(df, plain):
        return None
    return bool(df.filter(plain)["_e_msg"].str.ends_with("\n").mean() >= 0.5)  # type: ignore[operator]


def collector_lines(df: pl.DataFrame, *, keeps_newline: bool) -> pl.DataFrame:
    """Layer 3's records become their lines: time, stream, pod, namespace, container; partial records joined.

    Reads ``_e_kind`` and the record's fields (``collector_records``). Sets ``line``,
    ``_e_captured_at``, ``_e_stream``, ``_e_pod``, ``_e_namespace``, ``_e_container``,
    ``_e_c`` (a collector's line: layer 2 runs on it once more). Drops the record's columns.
    Adds ``_e_members`` where it joined.
    """
    line, taken = pl.col("line"), pl.col("_e_kind").is_not_null()
    by_newline = pl.lit(keeps_newline) & pl.col("_e_haslog") & pl.col("_e_rp").is_null()
    partial = is_partial(pl.col("_e_rp")) | (by_newline & ~pl.col("_e_msg").str.ends_with("\n"))
    when = pl.when(taken)
    df = df.with_columns(
        when.then(pl.coalesce("_e_msg", "_e_merged", "line")).otherwise(line).alias("line"),
        when.then(
            pl.coalesce(_any_time(pl.col("_e_rtime")), _any_time(pl.col("_e_rdate")), _any_time(pl.col("_e_otime")))
        )
        .otherwise(None)
        .fill_null(pl.col("_e_captured_at"))
        .alias("_e_captured_at"),
        *(
            when.then(pl.col(src)).otherwise(None).fill_null(pl.col(_W[dst])).alias(_W[dst])
            for src, dst in (("_e_rstream", "stream"), ("_e_kpod", "pod"), ("_e_kns", "namespace"))
        ),
        when.then(pl.col("_e_kcont")).otherwise(None).fill_null(pl.col("_e_container")).alias("_e_container"),
        (taken & partial.fill_null(False)).alias("_e_partial"),
        (taken & pl.col("_e_msg").is_not_null()).alias("_e_strip"),
        (pl.col("_e_c") | taken).alias("_e_c"),
    )
    keep = [c for c in _RECORD_COLUMNS if c != "_e_kind"]
    df = _join(df.drop(*keep), "_e_partial", "", [*_key(df), "_e_kind"])
    return _strip_newline(df, "_e_partial", "_e_kind")


def access_prefix(df: pl.DataFrame) -> pl.DataFrame:
    """Layer 4: Ambassador / Emissary print ``ACCESS `` before Envoy's line. Sets ``line``; adds ``_e_m``."""
    df = df.with_columns(pl.col("line").str.starts_with("ACCESS [").alias("_e_m"))
    if not _any(df, pl.col("_e_m")):
        return df
    return df.with_columns(_when(pl.col("line"), pl.col("line").str.slice(len("ACCESS "))))


# A line that might carry some wrapper; a frame where none does skips the layers. (Anchored: an
# alternation with an unanchored branch would scan every line to its end.)
_ANY_HEAD = r"^(?:\[pod/|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[^\t]*\t[^\t]*\t\{|" + _TS_ANY + " |"
_ANY_HEAD += r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\{|\[\d+\] |ACCESS \[|[^\t\s\[{]+\t\{)"

# Where a collector record says pod, namespace, container (its ``kubernetes`` map, else its tag).
_KUBE = {"pod": "_e_kpod", "namespace": "_e_kns", "container": "_e_kcont"}
# Per-record fields of a collector record (null where absent).
_FIELDS: dict[str, pl.DataType] = {
    "_e_msg": _S,
    "_e_haslog": pl.Boolean(),
    "_e_rstream": _S,
    "_e_rtime": _S,
    "_e_rdate": _S,
    "_e_rp": _S,
    "_e_p_key": pl.Boolean(),  # the partial flag came as `_p` (Fluent Bit), not `logtag`
    "_e_kpod": _S,
    "_e_kns": _S,
    "_e_kcont": _S,
    "_e_strong": pl.Boolean(),
    "_e_merged": _S,
}
# What layer 3 adds to a row (``collector_records``) and takes off again (``collector_lines``).
_RECORD_COLUMNS: dict[str, pl.DataType] = {"_e_kind": _S, "_e_rec": _S, "_e_tag": _S, "_e_otime": _S, **_FIELDS}


# --- helpers: whole-column steps -----------------------------------------------------------------


def _any(df: pl.DataFrame, mask: pl.Expr) -> bool:
    return bool(df.select(mask.fill_null(False).any()).item())


def _when(target: pl.Expr, value: pl.Expr, mask: str | pl.Expr = "_e_m") -> pl.Expr:
    """``target`` set to ``value`` where ``mask`` holds (and ``value`` is not null)."""
    cond = pl.col(mask) if isinstance(mask, str) else mask
    name = target.meta.output_name()
    return pl.when(cond.fill_null(False) & value.is_not_null()).then(value).otherwise(target).alias(name)


def _head(df: pl.DataFrame, pattern: str, where: pl.Expr) -> pl.DataFrame:
    """Match a rule's head regex: its groups in ``_e_x``, ``_e_m`` where it matched (and ``where`` holds)."""
    x = pl.col("line").str.extract_groups(f"^(?P<_h>{pattern.removeprefix('^')})")
    matched = (where & pl.col("_e_x").struct.field("_h").is_not_null()).fill_null(False)
    return df.lazy().with_columns(x.alias("_e_x")).with_columns(matched.alias("_e_m")).collect()


def _rest() -> pl.Expr:
    """The line after the head ``_head`` matched."""
    return pl.col("line").str.slice(pl.col("_e_x").struct.field("_h").str.len_chars().fill_null(0))


def _patch(df: pl.DataFrame, mask: pl.Expr, step: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
    """Apply a row-wise ``step`` only to the rows ``mask`` selects (decoders that must not see other rows)."""
    selected = df.select(mask.fill_null(False)).to_series()
    if not selected.any():
        return df
    if selected.all():
        return step(df).select(df.columns).cast(df.schema)  # type: ignore[arg-type]
    done = step(df.filter(selected)).select(df.columns).cast(df.schema)  # type: ignore[arg-type]
    return pl.concat([df.filter(~selected), done]).sort("_e_row")


def _key(df: pl.DataFrame) -> list[str]:
    """What tells interleaved streams apart: joins happen within one key."""
    return [
        c for c in ("source", *_W.values(), *META) if c in df.columns and c != "_e_captured_at" and c != "captured_at"
    ]


def _join(df: pl.DataFrame, flag: str, sep: str, key: list[str]) -> pl.DataFrame:
    """Join each run of rows flagged ``flag`` with the next row of the same key (``join_partials``).

    A run still flagged at its end is unfinished (``_e_inc``): it may go on in the next chunk.
    Adds ``_e_members`` where it joined: the rows each joined row was made of (``_harvest``).
    """
    if not _any(df, pl.col(flag)):
        return df
    aggs = (
        (pl.col("_e_joined").sum() + pl.len().cast(pl.Int64) - 1).alias("_e_joined"),
        (pl.col("_e_inc").any() | pl.col(flag).last()).alias("_e_inc"),
    )
    joined, _ = join_partials(df, flag, key, sep, row="_e_row", members="_e_members", aggs=aggs)
    return joined


def _harvest(df: pl.DataFrame, members: dict[int, list[int]]) -> pl.DataFrame:
    """Take the ``_e_members`` a join left into ``members`` (a joined row → the rows it was made of)."""
    if "_e_members" not in df.columns:
        return df
    joined = df.filter(pl.col("_e_members").is_not_null())
    for row, rows in zip(joined["_e_row"].to_list(), joined["_e_members"].to_list(), strict=True):
        members.setdefault(row, []).extend(rows)  # a row joined before keeps what it was made of
    return df.drop("_e_members")


def _strip_newline(df: pl.DataFrame, *done: str) -> pl.DataFrame:
    """A docker / collector line keeps the container's ``\\n`` (or ``\\r\\n``) until it is joined; drop it.

    Drops ``_e_strip`` and the columns ``done`` names (a layer's own, in the same step).
    """
    if not _any(df, pl.col("_e_strip")):
        return df.drop("_e_strip", *done, strict=False)
    stripped = pl.col("line").str.strip_suffix("\n").str.strip_suffix("\r")
    return (
        df.lazy()
        .with_columns(_when(pl.col("line"), stripped, "_e_strip"))
        .drop("_e_strip", *done, strict=False)
        .collect()
    )


def _members_of(rows: list[int], members: dict[int, list[int]]) -> list[int]:
    """The input rows that rows given out (some of them joined, maybe twice over) were made of."""
    found: set[int] = set()
    todo = list(rows)
    while todo:
        row = todo.pop()
        if row not in found:
            found.add(row)
            todo += members.get(row, [])
    return sorted(found)


def _rfc3339(text: pl.Expr) -> pl.Expr:
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_unit="us", time_zone="UTC", strict=False)


def _any_time(text: pl.Expr) -> pl.Expr:
    """A collector's time: RFC 3339 / ISO 8601 (any zone form, none = UTC) or epoch seconds."""
    iso = text.str.extract_groups(
        r"^(?P<d>\d{4}-\d\d-\d\d)[T ](?P<t>\d\d:\d\d:\d\d)(?P<f>\.\d+)? ?(?P<z>Z|[+-]\d\d:?\d\d)?$"
    ).struct
    zone = iso.field("z").str.replace(r"^([+-]\d\d)(\d\d)$", "${1}:${2}").fill_null("Z")
    stamp = pl.concat_str(iso.field("d"), pl.lit("T"), iso.field("t"), iso.field("f").fill_null(""), zone)
    epoch = text.str.extract_groups(r"^(?P<s>\d{9,11})(?:\.(?P<f>\d{1,9}))?$").struct
    micros = epoch.field("s").cast(pl.Int64) * 1_000_000 + epoch.field("f").fill_null("0").str.pad_end(
        6, "0"
    ).str.slice(0, 6).cast(pl.Int64)
    return pl.coalesce(_rfc3339(stamp), pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"))


def _cut_split_timestamps(df: pl.DataFrame) -> pl.DataFrame:
    """kubernetes#77603: kubelet wrote a timestamp before every 16 KiB CRI chunk; cut them out.

    Python, but only for the few lines longer than a chunk.
    """
    return df.with_columns(pl.col("line").map_elements(_uncut, return_dtype=pl.String))


def _uncut(line: str) -> str:
    raw, out = line.encode(), bytearray()
    while len(raw) > CRI_CHUNK and (m := _TS9_SPACE.match(raw, CRI_CHUNK)):
        out += raw[:CRI_CHUNK]
        raw = raw[m.end() :]
    return (bytes(out) + raw).decode("utf-8", errors="replace") if out else line


def _label(labels: pl.Expr, keys: tuple[str, ...]) -> pl.Expr:
    """The value of the first of ``keys`` in a label set as logcli prints it (``{a="x", b="y"}``)."""
    return pl.coalesce(*(labels.str.extract(rf'(?:^\{{|, ){k}="((?:[^"\\]|\\.)*)"', 1) for k in keys))


_LOGCLI_LABELS = tuple(k for keys in LABEL_KEYS.values() for k in keys)
_LOGCLI_ENTRY = pl.Struct({"labels": pl.Struct(dict.fromkeys(_LOGCLI_LABELS, _S)), "line": _S, "timestamp": _S})


def _logcli_entries(df: pl.DataFrame) -> pl.DataFrame:
    """logcli's JSON entries decoded (``_e_lj``): line, time and labels where both line and time are there."""
    try:
        entry = pl.col("line").str.json_decode(_LOGCLI_ENTRY).struct
        labels = entry.field("labels").struct
        fields = [entry.field("line"), entry.field("timestamp"), *(labels.field(k) for k in _LOGCLI_LABELS)]
        df = df.with_columns(pl.struct(fields).alias("_e_lj"))
    except pl.exceptions.PolarsError:  # a broken line: read what can be read
        paths = {"line": "$.line", "timestamp": "$.timestamp", **{k: f"$.labels.{k}" for k in _LOGCLI_LABELS}}
        df = df.with_columns(
            pl.struct(pl.col("line").str.json_path_match(p).alias(k) for k, p in paths.items()).alias("_e_lj")
        )
    e = pl.col("_e_lj").struct
    at = _rfc3339(e.field("timestamp"))
    df = df.with_columns((e.field("line").is_not_null() & at.is_not_null()).alias("_e_m"))
    return df.with_columns(
        _when(pl.col("line"), e.field("line")),
        _when(pl.col("_e_captured_at"), at),
        *(_when(pl.col(_W[name]), pl.coalesce(*(e.field(k) for k in keys))) for name, keys in LABEL_KEYS.items()),
    ).drop("_e_lj")


def _docker(df: pl.DataFrame) -> pl.DataFrame:
    """docker json-file lines: ``log`` keeps its ``\\n``; a chunk without one goes on in the next."""
    keys = ("log", "stream", "time")
    try:
        decoded = pl.col("line").str.json_decode(pl.Struct({k: _S for k in keys})).struct
        df = df.with_columns(decoded.field(k).alias(f"_e_d{k}") for k in keys)
    except pl.exceptions.PolarsError:  # a broken line: read what can be read
        df = df.with_columns(pl.col("line").str.json_path_match(f"$.{k}").alias(f"_e_d{k}") for k in keys)
    ok = pl.col("_e_dlog").is_not_null()
    return df.with_columns(
        pl.when(ok).then(pl.col("_e_dlog")).otherwise(pl.col("line")).alias("line"),
        _when(pl.col("_e_captured_at"), _rfc3339(pl.col("_e_dtime")), ok),
        _when(pl.col("_e_stream"), pl.col("_e_dstream"), ok),
        (ok & ~pl.col("_e_dlog").str.ends_with("\n")).alias("_e_partial"),
        ok.alias("_e_strip"),
        ok.alias("_e_m"),
        pl.when(ok).then(pl.lit("docker")).otherwise(pl.col("_e_via")).alias("_e_via"),
    )


def _join_fluentbit_lines(df: pl.DataFrame, key: list[str], final: bool) -> pl.DataFrame:
    """Fluent Bit prints strings raw: a record whose ``log`` holds ``\\n`` spans lines; join them back.

    After a record's first line (``[N] TAG: [``) that does not close it (``…}]``), the lines
    up to the one that does are its rest, unless a new record or the collector's own log
    comes first. Only a record that closes is joined (so a broken one cannot swallow the
    lines after it); one still open at the end of the chunk may close in the next.
    """
    line = pl.col("line")
    start, own, closed = line.str.contains(FLUENTBIT_START), line.str.contains(SELF_LOG), line.str.ends_with("}]")
    event_open = pl.when(start | closed | own).then(start & ~closed)
    cont = ~start & ~own & event_open.shift(1).forward_fill().over(key).fill_null(False)
    df = df.with_columns(cont.alias("_e_cont"), closed.alias("_e_closed"))
    df = df.with_columns((~pl.col("_e_cont")).cum_sum().over(key).alias("_e_fb"))  # a line and its rest
    closes = pl.col("_e_closed").any().over([*key, "_e_fb"])
    last = pl.col("_e_fb") == pl.col("_e_fb").max().over(key)
    df = df.with_columns((pl.col("_e_cont") & (closes | (last & (not final)))).alias("_e_cont"))
    still_open = (start | pl.col("_e_cont")) & ~closed & (closes | (last & (not final)))
    next_cont = pl.col("_e_cont").shift(-1).over(key).fill_null(not final)
    df = df.with_columns((still_open & next_cont).alias("_e_partial")).drop("_e_cont", "_e_closed", "_e_fb")
    return _join(df, "_e_partial", "\n", key).drop("_e_partial")


def _take_record(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Rows whose ``TIME TAG`` head matched and whose rest is a JSON object: record, tag and time."""
    if not _any(df, pl.col("_e_m")):
        return df.drop("_e_x", "_e_m")
    x, rest = pl.col("_e_x").struct, _rest()
    df = df.with_columns(pl.col("_e_m") & rest.str.starts_with("{") & rest.str.ends_with("}"))
    return df.with_columns(
        _when(pl.col("_e_rec"), rest),
        _when(pl.col("_e_tag"), x.field("tag")),
        _when(pl.col("_e_otime"), x.field("time")),
        _when(pl.col("_e_kind"), pl.lit(kind)),
    ).drop("_e_x", "_e_m")


def _fluentbit_msgpack(df: pl.DataFrame) -> pl.DataFrame:
    """``[N] TAG: [[SEC.NSEC, {META}], {BODY}]`` (≥ 2.1) or ``[N] TAG: [SEC.NSEC, {BODY}]``: best effort.

    Values are found by position (``str.find``), not by regex captures over the whole record.
    """
    df = _head(df, FLUENTBIT, pl.lit(True))
    x = pl.col("_e_x").struct
    body = _rest().str.strip_suffix("}]")
    at = body.str.find(r'(?:^|, )"(?:log|message)"=>"')
    value = body.str.slice(at).str.replace(r'^(?:, )?"(?:log|message)"=>"', "")
    end = value.str.find(_FB_NEXT_KEY)
    message = pl.when(end.is_not_null()).then(value.str.slice(0, end)).otherwise(value.str.strip_suffix('"'))
    kube = body.str.slice(body.str.find('"kubernetes"=>{', literal=True))
    return df.with_columns(
        pl.when(pl.col("_e_m")).then(pl.lit("fluentbit-msgpack")).alias("_e_kind"),
        x.field("tag").alias("_e_tag"),
        pl.coalesce(x.field("t1"), x.field("t2")).alias("_e_otime"),
        pl.when(at.is_not_null()).then(message).alias("_e_msg"),
        body.str.contains(r'(?:^|, )"log"=>"').alias("_e_haslog"),
        body.str.extract(r'"stream"=>"(stdout|stderr)"', 1).alias("_e_rstream"),
        body.str.extract(r'"time"=>"([^"]*)"', 1).alias("_e_rtime"),
        body.str.extract(rf'"(?:{"|".join(PARTIAL_KEYS)})"=>"([FP])"', 1).alias("_e_rp"),
        body.str.contains('"_p"=>"', literal=True).alias("_e_p_key"),
        *(kube.str.extract(rf'"{KUBERNETES_KEYS[k]}"=>"([^"]*)"', 1).alias(c) for k, c in _KUBE.items()),
        pl.lit(True).alias("_e_strong"),
    ).drop("_e_x", "_e_m")


def _decode_records(df: pl.DataFrame) -> pl.DataFrame:
    """Collector records (JSON text in ``_e_rec``) → the fields meshlog needs, in one decode."""
    try:
        record = pl.col("_e_rec").str.json_decode(RECORD).struct
        kube = record.field("kubernetes").struct
        fields = {k: record.field(k) for k in (*MESSAGE_KEYS, *_TEXT_KEYS)}
        fields |= {
            "kubernetes": record.field("kubernetes"),
            "docker": record.field("docker"),
            **{k: kube.field(k) for k in (*KUBERNETES_KEYS.values(), "namespace")},
            "pod": kube.field("pod").struct.field("name"),
            "container": kube.field("container").struct.field("name"),
        }
        df = df.with_columns(e.alias(f"_e_j{k}") for k, e in fields.items())
    except pl.exceptions.PolarsError:  # some record does not fit the shape: read each key leniently
        df = df.with_columns(pl.col("_e_rec").str.json_path_match(p).alias(f"_e_j{k}") for k, p in _PATHS.items())
    f = {k: pl.col(f"_e_j{k}") for k in _PATHS}
    strong = pl.any_horizontal(*(f[k].is_not_null() for k in ("kubernetes", "docker", "_p", "logtag", "date")))
    return df.with_columns(
        pl.coalesce(*(f[k] for k in MESSAGE_KEYS)).alias("_e_msg"),
        f["log"].is_not_null().alias("_e_haslog"),
        f["stream"].alias("_e_rstream"),
        f["time"].alias("_e_rtime"),
        f["date"].alias("_e_rdate"),
        pl.coalesce(*(f[k] for k in PARTIAL_KEYS)).alias("_e_rp"),
        f["_p"].is_not_null().alias("_e_p_key"),
        *(pl.coalesce(f[KUBERNETES_KEYS[k]], f[k]).alias(c) for k, c in _KUBE.items()),  # then Beats' layout
        pl.coalesce(pl.col("_e_tag"), f["tag"]).alias("_e_tag"),
        strong.alias("_e_strong"),
    )


def _merged_record(df: pl.DataFrame) -> pl.DataFrame:
    """No message key (Fluent Bit ``Merge_Log``, a parser filter): the record minus collector keys is the line."""
    kept = pl.col("_e_rec").str.replace_all(_DROP_KEYS, "").str.replace(r",\s*\}$", "}")
    return df.with_columns(kept.alias("_e_merged"))


def _from_tag(df: pl.DataFrame) -> pl.DataFrame:
    """pod, namespace and container from a tag, where the record had no ``kubernetes`` map.

    A stream holds few distinct tags (one per container): each is read once.
    """
    tags = df.select(pl.col("_e_tag").unique()).filter(pl.col("_e_tag").is_not_null())
    named = tag_metadata(pl.col("_e_tag"))
    tags = tags.with_columns(
        named["pod"].alias("_e_kpod_tag"),
        named["namespace"].alias("_e_kns_tag"),
        named["container"].alias("_e_kcont_tag"),
    )
    df = df.join(tags, on="_e_tag", how="left", maintain_order="left")
    return df.with_columns(
        pl.coalesce("_e_kpod", "_e_kpod_tag").alias("_e_kpod"),
        pl.coalesce("_e_kns", "_e_kns_tag").alias("_e_kns"),
        pl.coalesce("_e_kcont", "_e_kcont_tag").alias("_e_kcont"),
    ).drop("_e_kpod_tag", "_e_kns_tag", "_e_kcont_tag")
