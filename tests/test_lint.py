"""Lint and type checks, run as tests because CI runs only pytest (config in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".pytest_cache"  # already git-ignored: no .ruff_cache / .mypy_cache in the tree


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff():
    r = _run("ruff", "check", "--cache-dir", str(CACHE / "ruff"), "diffbands", "tests", "experiments",
             "paper_figures", "benchmarks")
    assert r.returncode == 0, f"ruff found problems (fix with `ruff check --fix`):\n{r.stdout}{r.stderr}"


def test_mypy():
    r = _run("mypy", "--cache-dir", str(CACHE / "mypy"), "diffbands")
    assert r.returncode == 0, f"mypy found problems:\n{r.stdout}{r.stderr}"
