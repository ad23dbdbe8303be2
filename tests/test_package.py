"""The package a researcher installs: ``python -m build`` makes an sdist and a wheel, and the wheel,
installed into a fresh virtual environment outside the repository, runs ``ropescope profile`` and
``ropescope report`` with every package file it needs (built-in prompt sets, report assets,
``py.typed``). The environment borrows the already-installed dependencies (torch, transformers, ...)
through a ``.pth`` line, so only ropescope itself comes from the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def test_the_wheel_holds_every_package_file(dist):
    (wheel,) = dist.glob("ropescope-*.whl")
    (sdist,) = dist.glob("ropescope-*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "ropescope/py.typed",
        "ropescope/data/shakespeare.txt",
        "ropescope/report/assets/report.js",
        "ropescope/report/assets/page.html",
    ):
        assert needed in names, needed
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    version = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    assert f"Version: {version.split('=')[1].strip().strip(chr(34))}" in metadata  # one place for the version
    assert "Description-Content-Type: text/markdown" in metadata
    assert sdist.stat().st_size > 0


def test_twine_check_passes(dist):
    """The metadata and the README rendered as PyPI would render it (``twine check --strict``)."""
    pytest.importorskip("twine")
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir()))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_the_installed_wheel_profiles_and_reports_outside_the_repository(dist, tmp_path):
    (wheel,) = dist.glob("ropescope-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the dependencies already installed here (not ropescope: its editable hook is not read from a .pth path)
    (Path(purelib) / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [
            python,
            "-c",
            "import ropescope, ropescope.report.page as p; print(ropescope.__file__, ropescope.__version__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(venv) in where and str(REPO) not in where, where
    ropescope = venv / "bin" / "ropescope"
    run = tmp_path / "run"
    profiled = subprocess.run(
        [ropescope, "profile", "--prompts", "italian", "--max-tokens", "16", "--out", str(run)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert profiled.returncode == 0, profiled.stderr[-2000:]
    reported = subprocess.run([ropescope, "report", str(run)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert reported.returncode == 0, reported.stderr[-2000:]
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "ropescope report: gemma-3-270m" in page and "script-src 'sha256-" in page


def test_the_declared_transformers_range_holds_only_the_tested_release():
    """What ``pip install ropescope`` may resolve to is a transformers the exactness tests passed on:
    the declared range admits the tested release (ropescope.version, requirements/constraints.txt)
    and no later minor release (adopt one with scripts/survey_newest.sh, then widen all three)."""
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    from ropescope.version import TESTED_TRANSFORMERS

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (line,) = re.findall(r'"(transformers[<>=!~][^"]*)"', text)
    allowed = Requirement(line).specifier
    tested = Version(TESTED_TRANSFORMERS)
    assert tested in allowed
    assert Version(f"{tested.major}.{tested.minor + 1}.0") not in allowed
    assert Version(f"{tested.major}.{tested.minor - 1}.0") not in allowed
    pinned = (REPO / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    assert f"transformers=={TESTED_TRANSFORMERS}\n" in pinned
    import transformers

    assert transformers.__version__ == TESTED_TRANSFORMERS, "the suite runs on the tested release"
