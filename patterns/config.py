"""Workflows built from a JSON, TOML or YAML document and a registry of step types.

A document describes a ``DAG``: its name, its steps (each of a registered type,
with fixed params, dependencies, a retry policy and a timeout) and the input
defaults that make it a template. Everything is checked when the workflow is
built, and each problem is a ``WorkflowConfigError`` that names the source,
the line and the key::

    report.toml:12: steps.render.depends_on[1]: 'ordrs' is not a step of this workflow

YAML needs PyYAML (``pip install 'duralog[yaml]'``); JSON and TOML use the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from duralog.errors import ConfigurationError, RegistrationError, WorkflowConfigError
from duralog.replay.definitions import Step

from ._config_build import build
from ._config_read import Format, InvalidDocument, Lines, key_of, read
from .dag import DAG

S = TypeVar("S", bound=Step[Any, Any])

FORMATS: dict[str, Format] = {".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


class StepRegistry:
    """The step types a workflow document may use, by name.

    Only steps put here can run from a document: a document never names code to
    import. ``add`` returns the step, so it also works as a decorator.

    Example:
        ```python
        step_types = duralog.StepRegistry()

        @step_types.add
        @duralog.step
        def fetch(source: str) -> list[str]: ...

        step_types.add(render_report, name="render")
        ```
    """

    def __init__(self, steps: Iterable[Step[Any, Any]] = ()) -> None:
        self._steps: dict[str, Step[Any, Any]] = {}
        for step in steps:
            self.add(step)

    def add(self, step: S, *, name: str | None = None) -> S:
        """Register ``step`` as type ``name`` (default: the step's name); returns ``step``."""
        if not isinstance(step, Step):
            raise ConfigurationError(f"StepRegistry.add needs a @duralog.step, got {step!r}")
        key = name or step.name
        known = self._steps.get(key)
        if known is not None and known is not step:
            raise RegistrationError(
                f"step type {key!r} is registered twice: {known!r} and {step!r}"
            )
        self._steps[key] = step
        return step

    def get(self, name: str) -> Step[Any, Any]:
        """The step registered as ``name``; ``RegistrationError`` lists the known ones."""
        try:
            return self._steps[name]
        except KeyError:
            raise RegistrationError(
                f"no step type {name!r} (known: {', '.join(self.names()) or 'none'})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._steps)


def load_workflow(
    path: str | os.PathLike[str], steps: StepRegistry, *, format: Format | None = None
) -> DAG:
    """Build and register the workflow a document file describes.

    The format comes from the suffix (``.json``, ``.toml``, ``.yaml``/``.yml``)
    unless ``format`` is given. Call it at module level (in the module a worker
    imports with ``--app``), so every process that runs the workflow builds it.

    Raises ``WorkflowConfigError`` (with source, line and key) for a document that
    is malformed or invalid, ``ConfigurationError`` for a file that cannot be read.

    Example:
        ``report = duralog.load_workflow("report.toml", step_types)``
    """
    file = Path(path)
    chosen = format or FORMATS.get(file.suffix.lower())
    if chosen is None:
        raise ConfigurationError(
            f"cannot tell the format of {file} from its suffix; name it .json, .toml, .yaml "
            "or .yml, or pass format="
        )
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read workflow document {file}: {exc.strerror or exc}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise WorkflowConfigError(str(file), line, None, "the document is not UTF-8") from None
    return parse_workflow(text, steps, format=chosen, source=str(file))


def parse_workflow(
    text: str, steps: StepRegistry, *, format: Format, source: str = "<config>"
) -> DAG:
    """Build and register the workflow described by document ``text``; see ``load_workflow``."""
    if format not in ("json", "toml", "yaml"):
        raise ConfigurationError(f"unknown document format {format!r}; one of json, toml, yaml")
    if not isinstance(steps, StepRegistry):
        raise ConfigurationError(f"steps must be a duralog.StepRegistry, got {steps!r}")
    lines = Lines()
    try:
        data, lines = read(text, format)
        return build(data, steps._steps, source)
    except InvalidDocument as invalid:  # before its base class: the location is known now
        line = invalid.line or lines.line_of(invalid.path)
        key = key_of(invalid.path) or None
        raise WorkflowConfigError(source, line, key, invalid.reason) from None
    except ConfigurationError as exc:  # PyYAML missing
        raise ConfigurationError(f"{source}: {exc}") from None
