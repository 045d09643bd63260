"""Planned failovers under a steady Celery publish load, N times: each run is the
integration test tests/integration/test_planned_failover.py (delete the master
pod, then a config rollout, while tasks are published through Sentinel), and
this prints tasks lost, results lost and the longest write pause per run.

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
    r"published (\d+) tasks; longest publish pause ([\d.]+)s; "
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
                "tests/integration/test_planned_failover.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        m = LINE.search(out.stdout)
        lost = "0 tasks and 0 results lost" if out.returncode == 0 else "LOSS or failure"
        if not m:
            print(f"run {i + 1}: no result line; exit {out.returncode}\n{out.stdout[-2000:]}")
            continue
        rows.append((int(m[1]), float(m[2]), float(m[3]), out.returncode == 0))
        print(
            f"run {i + 1}: {m[1]} tasks published, {lost}, longest publish pause "
            f"{m[2]} s, longest time without a writable master {m[3]} s",
            flush=True,
        )
    if rows:
        print(
            f"{sum(r[3] for r in rows)}/{len(rows)} runs lost nothing; longest publish pause "
            f"over all runs {max(r[1] for r in rows):.2f} s"
        )


if __name__ == "__main__":
    main()
