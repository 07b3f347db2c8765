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
| `1` `2` `3` | dashboard · requests · metrics |
| `/` | filter the requests (Enter applies) |
| `e` | only the errors among the filtered rows (5xx, 0 with a flag); again: undo · `c` clears the filter |
| Enter on a dashboard row | filter the requests by that flag, code or cluster |
| `↑` `↓` `PgUp` `PgDn` `Home` `End` | move in the table (`End` follows new rows) |
| Enter on a request | the request in full, its flags, the matching hint, every hop with its request id |
| click a heading · `s` | sort by that column (again: ascending, then off) · sort by duration |
| `p` | pause / resume redrawing while rows keep arriving |
| `x` | export the filtered rows as CSV (more formats in the palette) |
| `ctrl+p` | command palette: filters by flag, exports, tabs |
| `?` · `q` | this help · quit |

## Filter language (the same as `meshlog summarize --where`)

`response_code>=500` · `response_flags~UF` (regex) · `upstream_cluster~reviews and duration>1000` ·
`not (method=GET or method=HEAD)` · values may be quoted: `upstream_cluster='outbound|9080||reviews.default.svc.cluster.local'`

Logged values are shown with control characters escaped; nothing from a log reaches the terminal raw.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "back")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll { width: 90; height: 80%; border: thick $primary; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
