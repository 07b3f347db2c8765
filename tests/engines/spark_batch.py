"""Many ``summarize`` runs on one Spark Connect session, for the differential tests.

Run as ``python -m tests.engines.spark_batch URL JOBS.json``: each job is ``{"paths": […],
"format_file": …, "by": …, "where": …, "since": …, "until": …}``; the output (stdout) is one JSON
list of the summaries ``summarize --engine spark -o json`` would print for them (the same library
calls as the CLI's, without the options the report only echoes). A process of its own, as in
``test_spark.py``: the Connect client's gRPC threads never live in the test process; one session
for every job, so the server's start-up and the client's connection are paid once.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from meshlog.engines.spark import session, spark_state
from meshlog.pipeline import FormatOptions, compile_options
from meshlog.reports.state import default_by
from meshlog.reports.summary import summary_dict


def run(url: str, jobs: list[dict[str, Any]]) -> list[Any]:
    spark = session(url)
    out: list[Any] = []
    try:
        for job in jobs:
            fmt = compile_options(FormatOptions(format_file=job.get("format_file")))
            times = (job.get("since"), job.get("until"))
            state, used, _ = spark_state(
                spark, job["paths"], fmt, by=job.get("by"), where=job.get("where"), times=times
            )
            out.append(summary_dict(state, used, by=job.get("by") or default_by(state.schema)))
    finally:
        spark.stop()
    return out


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as f:
        summaries = run(sys.argv[1], json.load(f))
    json.dump(summaries, sys.stdout, default=str)
