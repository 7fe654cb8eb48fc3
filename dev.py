#!/usr/bin/env python3
"""The two commands of the quick start, with nothing but Python 3.11+ and pip.

    python3 dev.py demo [PATH]  # the checkout example: a crash, then a resume (log at PATH)
    python3 dev.py test    # lint, format check, type check and the whole test suite
    python3 dev.py check   # lint, format check, type check and the docs build only
    python3 dev.py docs    # the documentation site, into .venv/site (``docs serve``: live)
    python3 dev.py test --lowest   # the suite against the lowest versions pyproject allows

They create ``.venv`` (and install duralog with its test and docs extras into it) the
first time, and again whenever pyproject.toml changes. Arguments after ``test`` go to
pytest, except ``--busy N``: run the suite with N CPU-bound processes beside it, as
on a loaded machine (``DURALOG_TEST_BUSY=N`` does the same; CI uses 2). They are
stopped when the suite ends, however it ends. The tests run in one process per CPU
(pytest-xdist); ``-n 0`` runs them in one process, in order.

``test --lowest`` installs, into ``.venv-lowest``, every dependency of duralog and of
its test extra at the lowest version pyproject.toml allows (``name>=X`` becomes
``name==X``; what those need resolves as usual), then runs pytest there. It checks
that the declared floors are true; the linters run in ``.venv`` only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import types
import venv
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOWEST = ROOT / ".venv-lowest"
STAMP_NAME = ".duralog-installed"


def python_of(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin") / "python"


PYTHON = python_of(VENV)


def run(*cmd: object, cwd: Path = ROOT) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    process = subprocess.Popen([str(c) for c in cmd], cwd=cwd)
    try:
        code = process.wait()
    except BaseException as exc:  # let it clean up (kill what it started) before we go
        if not isinstance(exc, KeyboardInterrupt):  # (Ctrl-C reached it too)
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    if code:
        sys.exit(code)


def ensure_venv(venv_dir: Path = VENV, extras: str = "test,docs", *pip_args: str) -> Path:
    """Create ``venv_dir`` with duralog and ``extras`` installed (editable), unless it is
    there and newer than pyproject.toml; return its python."""
    python = python_of(venv_dir)
    stamp = venv_dir / STAMP_NAME
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    pyproject = ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < pyproject.stat().st_mtime:
        if not pip_installs_editable(python):
            run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(python, "-m", "pip", "install", "--quiet", *pip_args, "-e", f".[{extras}]")
        stamp.touch()
    return python


def lowest_constraints() -> list[str]:
    """``name==X`` for each ``name>=X`` among duralog's dependencies and its test extra."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        floor = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)", requirement)
        if floor:
            pins.append(f"{floor.group(1)}=={floor.group(3)}")
    return pins


def pip_installs_editable(python: Path) -> bool:
    """Whether the venv's pip installs a pyproject project in editable mode (21.3+, as
    bundled with Python 3.11): then there is no need to spend seconds upgrading it."""
    found = subprocess.run(
        [str(python), "-c", "import pip; print(pip.__version__)"], capture_output=True, text=True
    ).stdout.split(".")
    try:
        return (int(found[0]), int(found[1])) >= (21, 3)
    except (IndexError, ValueError):
        return False


def load_module(path: Path) -> types.ModuleType:
    """Import a stdlib-only helper module from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def lint() -> None:
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "ruff", "format", "--check", ".")


def package_tree() -> Path:
    """The package as it is installed, duralog/ with its mapped folders inside it, laid
    out with links in .venv/typecheck (for mypy and mkdocstrings, which cannot follow an
    editable install's import hook); return the folder that holds it."""
    tree = VENV / "typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "duralog"
    package.mkdir(parents=True)
    for path in (ROOT / "duralog").iterdir():
        if path.suffix in (".py", ".typed"):
            (package / path.name).symlink_to(path)
    for layer in ("console", "engine", "observe", "patterns", "replay", "store"):
        (package / layer).symlink_to(ROOT / layer, target_is_directory=True)
    return tree


def typecheck() -> None:
    """mypy --strict on the package, on the examples, and on every Python snippet of
    the README and docs/ (a fragment in its context: docs/snippets/extract.py), in one
    run."""
    snippets = VENV / "snippets"
    shutil.rmtree(snippets, ignore_errors=True)
    snippets.mkdir()
    extract = load_module(ROOT / "docs" / "snippets" / "extract.py")
    extract.write_typecheck_modules(ROOT, snippets)
    tree = package_tree()
    # From the tree: ``duralog`` is its folder there, and each example and snippet is a
    # top-level module (examples/ has no __init__.py) that imports it.
    run(
        PYTHON,
        "-m",
        "mypy",
        "--config-file",
        ROOT / "pyproject.toml",
        "--cache-dir",
        VENV / "mypy-cache",  # kept when the tree is laid out again
        "duralog",
        ROOT / "examples",
        snippets,
        cwd=tree,
    )


def build_docs(*args: str) -> None:
    """The documentation site (mkdocs.yml), warnings as errors."""
    package_tree()
    run(PYTHON, "-m", "mkdocs", *(args or ("build", "--strict", "--quiet")))


# A CPU-bound loop that also ends if dev.py dies without stopping it (SIGKILL).
BUSY_LOOP = """
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


def busy_count(args: list[str]) -> int:
    """N from ``--busy N`` (or ``--busy=N``), removed from ``args``; else $DURALOG_TEST_BUSY."""
    value = os.environ.get("DURALOG_TEST_BUSY", "0")
    for i, arg in enumerate(args):
        if arg == "--busy" and i + 1 < len(args):
            value = args.pop(i + 1)
            args.pop(i)
            break
        if arg.startswith("--busy="):
            value = args.pop(i).partition("=")[2]
            break
    if not value.isdigit():
        sys.exit(f"--busy (or DURALOG_TEST_BUSY) must be a number of processes, not {value!r}")
    return int(value)


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """Run ``count`` CPU-bound processes while the block runs; stop them after it,
    whether it passed, failed or was interrupted (Ctrl-C, SIGTERM)."""
    if not count:
        yield
        return
    busy = [
        # In a session of their own: Ctrl-C reaches the suite, and dev.py stops these.
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
        for _ in range(count)
    ]
    pids = " ".join(str(p.pid) for p in busy)
    print(f"+ {count} busy process(es) beside the suite: pids {pids}", flush=True)
    try:
        yield
    finally:
        for process in busy:
            process.kill()
        for process in busy:
            process.wait()
        print("+ stopped the busy processes", flush=True)


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs on any python3
        sys.exit(f"duralog needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "demo":
        ensure_venv()
        # An optional path for its log, from where the command was given.
        run(PYTHON, "examples/checkout.py", *(Path(a).resolve() for a in sys.argv[2:3]))
    elif command == "test":
        # SIGTERM (a CI job's timeout) unwinds like Ctrl-C: what runs is stopped cleanly.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        args = sys.argv[2:]
        busy = busy_count(args)
        if "--lowest" in args:
            args.remove("--lowest")
            constraints = LOWEST / "constraints.txt"
            LOWEST.mkdir(exist_ok=True)
            constraints.write_text("\n".join(lowest_constraints()) + "\n")
            python = ensure_venv(LOWEST, "test", "--constraint", str(constraints))
            run(python, "-m", "pip", "list", "--format=freeze")
            with busy_processes(busy):
                run(python, "-m", "pytest", "-n", "auto", *args)
            return
        ensure_venv()
        lint()
        typecheck()
        build_docs()
        with busy_processes(busy):
            # One worker per CPU; a -n of the caller's comes later and wins.
            run(PYTHON, "-m", "pytest", "-n", "auto", *args)
    elif command == "check":
        ensure_venv()
        lint()
        typecheck()
        build_docs()
    elif command == "docs":
        ensure_venv()
        build_docs(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
