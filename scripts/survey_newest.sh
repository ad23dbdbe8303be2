#!/usr/bin/env bash
# Re-run the families survey against the newest transformers on the package index, apart from the
# test gate, so that a new transformers release is adopted on purpose:
#   bash scripts/survey_newest.sh            # newest release
#   bash scripts/survey_newest.sh 5.24.0     # a chosen version
# It builds a throw-away venv (.venv-newest) from requirements/constraints.txt with only
# transformers left free, prints the families table and its difference from the docs' table (docs/reference/families.md),
# and runs the exactness tests of every "yes" (tests/model/test_families.py). When they pass,
# adopt the version: update transformers in requirements/constraints.txt, TESTED_TRANSFORMERS in
# ropescope/version.py and the range in pyproject.toml (only tested releases: a test checks the three
# agree), paste the table into docs/reference/families.md (ropescope families --markdown) and run
# the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-}
VENV=.venv-newest
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
grep -v '^transformers==' requirements/constraints.txt > "$VENV/constraints-but-transformers.txt"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$VENV/constraints-but-transformers.txt")
"${PIP[@]}" torch
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" --upgrade "transformers${VERSION:+==$VERSION}"
NEW=$("$VENV/bin/python" -c "import transformers; print(transformers.__version__)")
echo "transformers $NEW (locked: $(grep '^transformers==' requirements/constraints.txt))"
"$VENV/bin/ropescope" families --markdown > "$VENV/families.md"
awk '/^\| family \| layout/{on=1} on&&/^\|/{print} on&&!/^\|/{if(on)exit}' docs/reference/families.md > "$VENV/readme-families.md"
echo "--- docs table vs transformers $NEW:"
diff "$VENV/readme-families.md" <(grep '^|' "$VENV/families.md") || true
"$VENV/bin/python" -m pytest -q tests/model/test_families.py -k "not readme"
