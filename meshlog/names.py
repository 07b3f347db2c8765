"""Names as people read them on a screen: in-mesh names without the suffix every one of them has.

``outbound|9080||reviews.default.svc.cluster.local`` is ``outbound|9080||reviews.default`` on a
terminal or in the TUI (a port after the suffix stays): 18 columns back, nothing lost. Machine
outputs (JSON, CSV, Parquet, ``--where`` filters) keep the full name.
"""

from __future__ import annotations

import re

IN_MESH = r"\.svc\.cluster\.local(:\d+)?$"  # the suffix every in-mesh name has (a port may follow)
_IN_MESH = re.compile(IN_MESH)
SHORTENED = ("upstream_cluster", "authority", "cluster", "destination_service")  # columns shown shortened


def short(name: str) -> str:
    """``reviews.default.svc.cluster.local:9080`` → ``reviews.default:9080``."""
    return _IN_MESH.sub(r"\1", name)
