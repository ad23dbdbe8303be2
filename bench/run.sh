#!/usr/bin/env bash
# All benchmarks, one command: bash bench/run.sh (results in bench/results/*.csv); ends with the
# table of every ratio next to its target (bench/targets.py, kept in bench/results/ratios.json).
set -euo pipefail
cd "$(dirname "$0")"
../.venv/bin/python kernel_counts.py
../.venv/bin/python whole_profile.py
../.venv/bin/python profile_vs_forward.py
../.venv/bin/python prope_vs_forward.py
../.venv/bin/python heads_vs_eager.py
../.venv/bin/python throughput.py
../.venv/bin/python load_time.py
../.venv/bin/python tl_vs_ropescope.py
../.venv/bin/python memory_vs_prompts.py
../.venv/bin/python long_context.py
../.venv/bin/python by_position.py
../.venv/bin/python figures_time.py
../.venv/bin/python compile_stats.py  # would torch.compile pay for the statistics? (not on this CPU)
if ../.venv/bin/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  ../.venv/bin/python gpu_gemma7b.py --tokens 2048 8192 --reps 5 --kernels results/gpu_gemma7b_kernels.txt  # Gemma-7B architecture, bf16
  ../.venv/bin/python compile_stats.py --device cuda --dtype bfloat16 --shape gemma-7b --tokens 2048 8192
fi
../.venv/bin/python targets.py
