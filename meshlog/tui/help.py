"""The help screen (``?``): every key, the filter language, and what the panels mean."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# meshlog — keys

| key | does |
|---|---|
| `1` `2` `3` | dashboard · requests · metrics (from any tab) |
| `/` | filter the requests (Enter applies; Esc goes back to the table) |
| `e` | only the errors among the filtered rows (5xx, 0 with a flag); again: undo |
| `f` `u` | on a request: only the requests with its flags · its upstream cluster (narrows the filter) |
| `c` | clear the filter |
| Enter, click | on a dashboard row: list its requests (a hint, a flag, a code, a cluster) |
| Enter, double-click | on a request: every field, its flags, the matching hint, every hop with its request id |
| `↑` `↓` `j` `k` | move one row; the mouse wheel scrolls |
| `PgUp` `PgDn` | move a page |
| `Home` `End` `g` `G` | first · last row (`End` follows new rows of a live stream) |
| click a heading | sort by it (again: ascending, then off); `s` sorts by duration |
| `p` | pause / resume redrawing while rows keep arriving |
| `x` | export the filtered rows as CSV (more formats in the palette) |
| `ctrl+p` | command palette: filters by flag, exports, tabs |
| `Esc` `q` | close this help or a request's details |
| `?` · `q` | this help · quit |

## Filter language (the same as `meshlog summarize --where`)

`response_code>=500` · `response_flags~UF` (regex) · `upstream_cluster~reviews and duration>1000` ·
`start_time>=2026-11-25T21:00:00Z` · `not (method=GET or method=HEAD)` · values may be quoted:
`upstream_cluster='outbound|9080||reviews.default.svc.cluster.local'`

Logged values are shown with control characters escaped; nothing from a log reaches the terminal raw.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "back")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll {
        width: 100%; max-width: 100; height: 90%; border: thick $primary; background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
