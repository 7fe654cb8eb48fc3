"""Debugging replays: stop in the workflow code at a seq, and say what a replay found.

What ``duralog replay`` needs besides ``check()``, kept out of the command line so it
can be tested without a terminal:

* ``breakpoint_at(seq, stop)``: an ``on_input`` hook for ``check()`` that calls
  ``stop`` once, with the first input at or after ``seq`` (``fired`` says whether);
* ``WorkflowPdb``: pdb that only stops in the user's workflow code (the first line it
  shows is the code resuming with the recorded value), not in duralog's, click's or
  the standard library's frames;
* ``report_text`` and ``ReplayTally``: a report in words, and the counts of a replay
  of many histories.

Nothing here reads a file, a clock or a terminal by itself: the command line passes in
what it read (the histories, the library paths, the debugger's streams).
"""

from __future__ import annotations

import pdb
from collections.abc import Callable
from typing import IO, Any

from .checker import ReplayReport
from .state import Input

#: Module prefixes that are never the user's workflow code.
NOT_USER_CODE = ("duralog", "click")


class Breakpoint:
    """An ``on_input`` hook that calls ``stop(item)`` once: with the first input whose
    seq is ``seq`` or later (the input the workflow code receives next). ``fired`` says
    whether it did (not when ``seq`` is past the history's last input)."""

    def __init__(self, seq: int, stop: Callable[[Input], None]) -> None:
        self.seq = seq
        self.stop = stop
        self.fired = False

    def __call__(self, item: Input) -> None:
        if self.fired or item.seq < self.seq:
            return
        self.fired = True
        self.stop(item)


def breakpoint_at(seq: int, stop: Callable[[Input], None]) -> Breakpoint:
    """A ``Breakpoint`` at ``seq`` that calls ``stop``."""
    return Breakpoint(seq, stop)


def stop_banner(item: Input) -> str:
    """What ``--break-at`` prints before pdb takes over at ``item``."""
    return (
        f"-- replay reached seq {item.seq} ({item.kind}); pdb stops at the line of workflow "
        "code that receives it: `n` steps, `p name` prints, `c` continues --"
    )


def is_user_code(module: str, filename: str, library: tuple[str, ...]) -> bool:
    """Whether a frame of ``module`` in ``filename`` is the user's code: not duralog's
    or click's, not under one of the ``library`` folders (stdlib, site-packages), and
    not generated code (annotations evaluated by typing, dataclass methods), whose
    file name is ``<string>``."""
    if module.partition(".")[0] in NOT_USER_CODE:
        return False
    return not filename.startswith((*library, "<"))


class WorkflowPdb(pdb.Pdb):
    """pdb that only stops in user code.

    Args:
        library: folders of code that is not the user's (the stdlib, site-packages).
        stdin: where the debugger reads commands (default ``sys.stdin``).
        stdout: where it writes (default ``sys.stdout``).
    """

    def __init__(
        self,
        library: tuple[str, ...],
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
    ) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.library = tuple(p for p in library if p)
        #: Whether the user ended the session (``q``, or the end of its input): the
        #: replay was stopped, its outcome says nothing about the code.
        self.quit_by_user = False

    def set_quit(self) -> None:
        self.quit_by_user = True
        super().set_quit()

    def stop_here(self, frame: Any) -> bool:
        module = frame.f_globals.get("__name__", "")
        if not is_user_code(module, frame.f_code.co_filename, self.library):
            return False
        return bool(super().stop_here(frame))


def report_text(report: ReplayReport) -> str:
    """One replay's report as ``duralog replay`` prints it."""
    head = f"{report.workflow_id} ({report.workflow_name}): "
    if not report.ok:
        return (
            f"{head}DIVERGES at seq {report.seq}\n"
            f"  recorded:  {report.recorded or 'nothing'}\n"
            f"  attempted: {report.attempted or 'no further decision'}\n"
            f"  code:      {report.location or 'unknown'}\n"
            "  hint: keep the old path for running workflows behind "
            '`if duralog.patched("my-change")`, or let them finish on the old code'
        )
    where = "finished" if report.finished else f"waiting at {report.waiting_at}"
    return f"{head}agrees (replayed {report.replayed_to} of {report.events} events, {where})"


class ReplayTally:
    """The counts of a replay of many histories: agree, diverge, damaged."""

    def __init__(self) -> None:
        self.agree = 0
        self.diverge = 0
        self.damaged = 0
        #: How many histories were skipped for want of their code, by workflow name.
        self.skipped: dict[str, int] = {}

    def add(self, report: ReplayReport) -> None:
        """Count one replay's outcome."""
        if report.ok:
            self.agree += 1
        else:
            self.diverge += 1

    def add_damaged(self) -> None:
        """Count a history that could not be replayed: its log is damaged."""
        self.damaged += 1

    def add_skipped(self, name: str) -> None:
        """Count a history that was not replayed: no code is registered for ``name``."""
        self.skipped[name] = self.skipped.get(name, 0) + 1

    def progress(self) -> str:
        """The counts so far, as the progress line shows them."""
        return f"{self.agree} agree, {self.diverge} diverge"

    def summary(self) -> str:
        """The last line of a replay of many histories."""
        line = self.progress() + (f", {self.damaged} damaged" if self.damaged else "")
        if self.skipped:
            names = ", ".join(f"{name} ({n})" for name, n in sorted(self.skipped.items()))
            count = sum(self.skipped.values())
            line += f", {count} skipped (no code registered for {names}: add its module with --app)"
        return line

    @property
    def exit_code(self) -> int:
        """0 when every history agrees, 1 when any diverges or is damaged."""
        return 1 if self.diverge or self.damaged else 0
