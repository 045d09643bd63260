"""Planned failovers under a steady Celery publish load, N times: each run is the
integration test tests/integration/test_planned_failover.py (delete the master
pod, then a config rollout, while tasks are published through Sentinel), and
this prints, per run, whether the broker lost an acknowledged publish, how many
tasks never completed (cut off on the worker side at the handover) and the
longest write pause.

    .venv/bin/python bench/planned_failover.py [--runs 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(
    r"published (\d+) tasks; never completed (\d+) .*?; longest publish pause ([\d.]+)s; "
    r"longest time without a writable master ([\d.]+)s"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for i in range(args.runs):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                "-m",
                "bench",
                "tests/integration/test_planned_failover.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        m = LINE.search(out.stdout)
        if not m:
            print(f"run {i + 1}: no result line; exit {out.returncode}\n{out.stdout[-2000:]}")
            continue
        published, never, pause, gap = int(m[1]), int(m[2]), float(m[3]), float(m[4])
        broker_ok = out.returncode == 0  # no acknowledged publish lost by the broker
        rows.append((published, never, pause, broker_ok))
        print(
            f"run {i + 1}: {published} tasks published, broker lost "
            f"{'none' if broker_ok else 'SOME'}, never completed {never}, longest publish "
            f"pause {pause} s, longest time without a writable master {gap} s",
            flush=True,
        )
        print(f"    {m.string[m.start() : m.string.find(chr(10), m.start())]}", flush=True)
        stall = out.stdout.find("a publish took over 10 s")
        if stall >= 0:
            print("    " + out.stdout[stall:].split("\n\n")[0].replace("\n", "\n    "), flush=True)
    if rows:
        print(
            f"{sum(r[3] for r in rows)}/{len(rows)} runs: no acknowledged publish lost; "
            f"{sum(r[1] == 0 for r in rows)}/{len(rows)} runs: every task completed; "
            f"longest publish pause {max(r[2] for r in rows):.2f} s"
        )


if __name__ == "__main__":
    main()
