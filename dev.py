#!/usr/bin/env python3
"""The two commands of the quick start, with nothing but Python 3.11+ and pip.

    python3 dev.py demo    # the checkout example: a crash, then a resume
    python3 dev.py test    # lint, type check and the whole test suite

Both create ``.venv`` (and install duralog with its test extra into it) the
first time, and again whenever pyproject.toml changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".duralog-installed"


def run(*cmd: object, cwd: Path = ROOT) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], cwd=cwd)
    if code:
        sys.exit(code)


def ensure_venv() -> None:
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pyproject = ROOT / "pyproject.toml"
    if not STAMP.exists() or STAMP.stat().st_mtime < pyproject.stat().st_mtime:
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]")
        STAMP.touch()


def typecheck() -> None:
    """mypy --strict on the package as it is installed: duralog/ with engine/, replay/, store/."""
    tree = VENV / "typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "duralog"
    package.mkdir(parents=True)
    for path in (ROOT / "duralog").iterdir():
        if path.suffix in (".py", ".typed"):
            (package / path.name).symlink_to(path)
    for layer in ("engine", "replay", "store"):
        (package / layer).symlink_to(ROOT / layer, target_is_directory=True)
    run(PYTHON, "-m", "mypy", "--config-file", ROOT / "pyproject.toml", "-p", "duralog", cwd=tree)


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs on any python3
        sys.exit(f"duralog needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "demo":
        ensure_venv()
        run(PYTHON, "examples/checkout.py")
    elif command == "test":
        ensure_venv()
        run(PYTHON, "-m", "ruff", "check", ".")
        typecheck()
        run(PYTHON, "-m", "pytest", *sys.argv[2:])
    elif command == "check":
        ensure_venv()
        run(PYTHON, "-m", "ruff", "check", ".")
        typecheck()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
