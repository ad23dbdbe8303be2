"""Benchmark: ``ropescope figures`` (all entries, bundled Gemma 3 270M) now vs an earlier release,
both measured in this run.

The earlier release is checked out with ``git worktree`` into a temporary directory and run with
the same Python environment (``python cli.py figures`` there imports that checkout's package); the
current tree runs the same way. Each run is a fresh process with an empty output directory, and
they alternate ``--reps`` times. The current run's per-entry times (printed by the command) are
shown too.

Target (issue 16): half the earlier release's time.
Run: ``.venv/bin/python bench/figures_time.py [--baseline 6c4480d] [--reps 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import record

REPO = Path(__file__).resolve().parents[1]


def timed_run(checkout: Path, out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "cli.py", "figures", "--out", str(out)], cwd=checkout, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"figures failed in {checkout}: {proc.stderr.strip().splitlines()[-1:]}")
    per_entry = next((line for line in proc.stderr.splitlines() if line.startswith("time per entry")), "")
    return seconds, per_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="6c4480d", help="git revision of the earlier release")
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.baseline], cwd=REPO, check=True)
        try:
            then, now, entries = [], [], ""
            for rep in range(args.reps):
                then.append(timed_run(old, Path(tmp) / f"old-{rep}")[0])
                seconds, entries = timed_run(REPO, Path(tmp) / f"new-{rep}")
                now.append(seconds)
                print(f"rep {rep}: {args.baseline} {then[-1]:.1f} s, this tree {now[-1]:.1f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)
    t0, t1 = statistics.median(then), statistics.median(now)
    print(f"figures, all entries: {args.baseline} {t0:.1f} s, this tree {t1:.1f} s, ratio {t1 / t0:.3f}")
    print(entries)
    record("figures_time", {f"figures, all entries / previous release ({args.baseline}, {t0:.0f} s)": t1 / t0})


if __name__ == "__main__":
    main()
