"""How the log describes a step's failure: the error's type, message and traceback."""

from __future__ import annotations

import traceback as _traceback

from duralog.errors import ErrorDetails


def details_of(exc: BaseException, with_traceback: bool = False) -> ErrorDetails:
    """Describe ``exc`` the way the log records it.

    With ``with_traceback``, the formatted traceback starts at the first frame of
    user code: duralog's and asyncio's own frames above it say nothing useful.
    """
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        name = cls.__qualname__
    else:
        name = f"{cls.__module__}.{cls.__qualname__}"
    text = ""
    if with_traceback:
        tb = exc.__traceback__
        while tb is not None and _is_internal(tb.tb_frame.f_globals.get("__name__", "")):
            tb = tb.tb_next
        text = "".join(_traceback.format_exception(cls, exc, tb))
    return ErrorDetails(name, str(exc), text)


def _is_internal(module: str) -> bool:
    return module.partition(".")[0] in ("duralog", "asyncio", "concurrent")
