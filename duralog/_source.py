"""``python -m duralog`` from a source checkout: it runs, or says in one line why not.

In the repository's root this folder is found before any installed copy, and the
layers that pyproject.toml maps into the package (engine/, store/, ...) are its
siblings, not its subfolders: the package is told to find them there.

With duralog's dependencies missing (nothing installed yet), ``python -m duralog``
says so in one line rather than with a ``ModuleNotFoundError`` traceback. Python
sets ``sys.argv[0]`` to ``"-m"`` while it finds the module to run, that is while the
package is imported; an ordinary ``import duralog`` fails as any import does.

``duralog/__init__.py`` imports this module before anything else.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from os import path

_HERE = path.dirname(path.abspath(__file__))
_ROOT = path.dirname(_HERE)
if not path.isdir(path.join(_HERE, "engine")) and path.isfile(
    path.join(_ROOT, "engine", "__init__.py")
):
    sys.modules["duralog"].__path__.append(_ROOT)  # the package being imported

#: The dependencies ``import duralog`` needs (module: distribution), from pyproject.toml.
REQUIRED = {
    "msgspec": "msgspec",
    "sqlite_utils": "sqlite-utils",
    "click": "click",
    "croniter": "croniter",
}

if sys.argv[:1] == ["-m"]:
    _missing = [package for module, package in REQUIRED.items() if not find_spec(module)]
    if _missing:
        raise SystemExit(
            f"duralog: needs {', '.join(_missing)}, not installed for {sys.executable}; "
            "install duralog first (pip install -e . in its repository, or python3 dev.py demo)"
        )
