"""TUI benchmark: time to first paint and filter latency on N synthetic Istio lines (targets: first
paint <= 2 s, filter <= 200 ms on 1M rows). Not a test: it prints what it measured.

    python bench/tui.py                               # 1,000,000 lines in a temp file
    python bench/tui.py --keep /tmp/istio-1m.log      # reuse a file of that many lines

"First paint" is from creating the app (imports done) to the moment the first requests are handed
to the table (rows appear while the rest of the file is still being parsed); "loaded" is when every line is
in. Filter latency is applying a ``--where`` expression to all rows and repainting the table,
measured in the running app (headless, 140x44), each filter three times, best reported.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from synth import write_lines  # noqa: E402 - bench/ is the script's folder; kept with the path set-up

from meshlog.tui import create_app  # noqa: E402 - needs the repo root put on sys.path above

FILTERS = (
    "response_code>=500",
    "response_flags~UF and upstream_cluster~reviews",
    "duration>1000 or response_code=0",
    "",  # clearing the filter shows every row again
)


async def measure(path: Path) -> dict[str, float]:
    app = create_app([str(path)], format="istio", refresh_seconds=0.05)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.press("2")
        while app.reading:
            await pilot.pause(0.05)
        assert app.first_rows_at is not None
        # the moment the first rows were handed to the table (painted on the next frame); polling from
        # here would measure Pilot's idle waits on a busy app, not the app
        out["first_paint_s"] = app.first_rows_at - t0
        out["loaded_s"] = time.perf_counter() - t0
        app.apply_filter("")
        out["rows"] = app.state.requests().height
        for where in FILTERS:
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                app.apply_filter(where)
                await pilot.pause()  # repainted
                best = min(best, time.perf_counter() - t)
            out[f"filter_ms[{where or 'clear'}]"] = 1000 * best
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="reuse this log if it exists, else write it there")
    args = ap.parse_args(argv)
    path = args.keep or Path(tempfile.mkdtemp(prefix="meshlog-tui-bench-")) / "istio.log"
    if not path.exists():
        write_lines(path, args.lines)
    results = asyncio.run(measure(path))
    print(f"meshlog tui on {path} ({results['rows']:,.0f} requests)")
    for key, value in results.items():
        print(f"  {key:48} {value:12,.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
