"""The line accounting: what lines became (access / unparsed / other by kind), in one mergeable tally.

It lives beside the parser because every engine keeps one (the stream parser here, the Spark engine's
counts there) and the summary state carries it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from meshlog.parse import UNPARSED_SCHEMA, AccessLog, LineCounts

KEEP_UNPARSED = 20  # unparsed lines kept as examples (all are counted)


@dataclass
class Tally:
    """What lines became (access / unparsed / other by kind) and the first unparsed ones.

    Mergeable: the tally of two chunks is the merge of theirs, in order.
    """

    access: int = 0
    unparsed: int = 0
    connections: int = 0  # of the access lines, ztunnel's records (Istio ambient); the rest are requests
    other_kinds: Counter[str] = field(default_factory=Counter)
    examples: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=UNPARSED_SCHEMA))

    @classmethod
    def of(cls, log: AccessLog) -> Tally:
        kinds = Counter(dict(log.other.group_by("kind").len().iter_rows())) if log.other.height else Counter()
        access = log.requests.height + log.connections.height
        return cls(access, log.unparsed.height, log.connections.height, kinds, _examples(log.unparsed))

    @property
    def other(self) -> int:
        return sum(self.other_kinds.values())

    @property
    def counts(self) -> LineCounts:
        return LineCounts(self.access + self.unparsed + self.other, self.access, self.unparsed, self.other)

    @property
    def first_unparsed(self) -> tuple[str, int, str] | None:
        if not self.examples.height:
            return None
        source, line_no, reason = self.examples.select("source", "line_no", "reason").row(0)
        return source, line_no, reason

    def merge(self, later: Tally) -> None:
        """Add ``later`` (lines that came after these)."""
        self.access += later.access
        self.unparsed += later.unparsed
        self.connections += later.connections
        self.other_kinds.update(later.other_kinds)
        if self.examples.height < KEEP_UNPARSED and later.examples.height:
            both = pl.concat([self.examples, later.examples], how="diagonal_relaxed")
            self.examples = both.head(KEEP_UNPARSED)


def _examples(unparsed: pl.DataFrame) -> pl.DataFrame:
    return unparsed.head(KEEP_UNPARSED).select(*UNPARSED_SCHEMA)
