"""The performance targets (issues 16 and 22) and the ratios the benchmarks measured against them.

Every benchmark calls :func:`record` with its ratios (name -> measured value, each against a
baseline measured in the same run); ``bash bench/run.sh`` ends with ``python bench/targets.py``,
which prints every target next to the latest measurement and whether it is met. Measurements are
kept in ``bench/results/ratios.json`` (one entry per ratio, with the machine and date).

Run: ``.venv/bin/python bench/targets.py``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STORE = RESULTS / "ratios.json"

# ratio name prefix -> (target, unit); a ratio is met when measured <= target
TARGETS = {
    "whole profile() / forward": (1.02, "x"),
    "peak memory, 32x prompts / 1x": (1.02, "x"),
    "heads time / forward, 8,192 tokens": (1.3, "x"),
    "heads memory / forward, 8,192 tokens": (1.2, "x"),
    "cached load, fresh process": (5.0, "s"),
    "prope / bare forwards with LM head": (1.5, "x"),
    "train-prope / bare training steps": (1.5, "x"),
    "figures, all entries / previous release": (0.5, "x"),
    "by-position profile / plain profile": (1.05, "x"),
    "by-position peak memory / plain": (1.02, "x"),
    # issue 22: what a GPU pays, counted on any machine (bench/kernel_counts.py)
    "operators one more profile() prompt adds / the forward's": (0.3, "x"),
    "operators one more scan_heads() prompt adds / the forward's": (1.0, "x"),
    "host syncs one more profile() prompt adds": (0, ""),
    "host syncs one more scan_heads() prompt adds": (0, ""),
    "operators of a profile() call's fixed part / the forward's": (0.5, "x"),
    "operators of a scan_heads() call's fixed part / the forward's": (1.5, "x"),
    "host syncs of a one-prompt profile() call": (4, ""),
    "host syncs of a one-prompt scan_heads() call": (4, ""),
    # issue 22 on a GPU, when one is lent (bench/gpu_gemma7b.py: Gemma-7B architecture, bfloat16)
    "GPU profile time / forward, 2,048 tokens": (1.05, "x"),
    "GPU profile time / forward, 8,192 tokens": (1.02, "x"),
    "GPU heads time / forward, 8,192 tokens": (1.5, "x"),
}


def machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)}, {cpus} CPU cores"
    except ImportError:  # pragma: no cover - the benchmarks always have torch
        pass
    return f"{platform.machine()} CPU, {cpus} cores"


def record(bench: str, ratios: dict[str, float], where: str | None = None) -> None:
    """Store ``ratios`` measured by ``bench`` (replacing earlier values of the same names) on the
    machine ``where`` (this one unless named: a GPU run's CSV recorded from another machine)."""
    RESULTS.mkdir(exist_ok=True)
    stored = json.loads(STORE.read_text()) if STORE.is_file() else {}
    when = time.strftime("%Y-%m-%d %H:%M")
    for name, value in ratios.items():
        stored[name] = {"value": value, "bench": bench, "machine": where or machine(), "when": when}
    STORE.write_text(json.dumps(stored, indent=2, sort_keys=True))


def target_of(name: str) -> tuple[float, str] | None:
    return next((t for prefix, t in TARGETS.items() if name.startswith(prefix)), None)


def table() -> str:
    """Markdown table: every stored ratio next to its target."""
    stored = json.loads(STORE.read_text()) if STORE.is_file() else {}
    lines = ["| measured | target | value | met | benchmark | machine |", "|---|---|---|---|---|---|"]
    for name in sorted(stored, key=lambda n: (list(TARGETS).index(_prefix(n)) if _prefix(n) else 99, n)):
        entry, target = stored[name], target_of(name)
        if target:
            limit, unit = target
            goal, met = f"<= {limit:g}{unit}", "yes" if entry["value"] <= limit else "**no**"
        else:  # context for a target (a floor, a baseline): no target of its own
            goal, met, unit = "(context)", "", ""
        where = f"`bench/{entry['bench']}.py` | {entry['machine']}"
        lines.append(f"| {name} | {goal} | {entry['value']:.3f}{unit} | {met} | {where} |")
    missing = [p for p in TARGETS if not any(n.startswith(p) for n in stored)]
    lines += [f"| {p} | <= {TARGETS[p][0]:g}{TARGETS[p][1]} | not measured yet | | | |" for p in missing]
    return "\n".join(lines)


def _prefix(name: str) -> str | None:
    return next((p for p in TARGETS if name.startswith(p)), None)


if __name__ == "__main__":
    print(table())
