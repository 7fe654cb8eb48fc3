"""Read a JSON, TOML or YAML document: its values, and the line of each key.

``read`` parses with the standard parsers (PyYAML for YAML, when it is
installed) and turns every syntax error, and a key given twice, into an
``InvalidDocument`` with its line. The parsers give values, not positions, so
after a document has parsed, a small scanner walks its text once more and notes
the line of every key and array item (the schema's errors name a path; this
finds its line).
A path is a tuple of keys and indexes, e.g.
``("steps", "report", "depends_on", 1)``. They assume the text is valid (the
real parser accepted it already) and stop quietly at anything unexpected: a
path they did not reach is then reported at the line of its nearest ancestor.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from typing import Any, Literal

from duralog.errors import ConfigurationError

Path = tuple[str | int, ...]
Format = Literal["json", "toml", "yaml"]


class InvalidDocument(ConfigurationError):
    """What is wrong with a document: at which path (``()``: none), why, and the line
    when it is known without the path (a syntax error).

    Internal: it never reaches a caller. ``parse_workflow`` adds the source and the
    line of the path and raises the public ``WorkflowConfigError`` (in
    ``duralog.errors``) instead; only then is the location known. It is a
    ``ConfigurationError`` all the same, like the error it becomes.
    """

    def __init__(self, reason: str, path: Path = (), line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.line = line


def read(text: str, format: Format) -> tuple[Any, Lines]:
    """The document's value and the lines of its keys; ``InvalidDocument`` for a syntax
    error."""
    try:
        if format == "json":
            data, lines = json.loads(text), _scan(text, _value)
        elif format == "toml":
            data, lines = tomllib.loads(text), _scan(text, _toml_document)
        else:
            data, lines = _read_yaml(text)
    except RecursionError:
        raise InvalidDocument("the document is nested too deeply", line=1) from None
    except json.JSONDecodeError as exc:
        raise InvalidDocument(f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else text.count("\n") + 1
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise InvalidDocument(f"invalid TOML: {reason}", line=line) from None
    if lines.duplicates:  # the JSON and YAML parsers keep the last one silently
        path, line = lines.duplicates[0]
        raise InvalidDocument("this key appears twice", path, line)
    return data, lines


def key_of(path: Path) -> str:
    """A path as the user reads it: ``steps.report.depends_on[1]``, ``steps."a.b"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += f".{text}" if out else text
    return out


def _read_yaml(text: str) -> tuple[Any, Lines]:
    try:  # an optional extra; imported by name so type checkers need no stubs for it
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise ConfigurationError(
            "reading YAML needs PyYAML (pip install 'duralog[yaml]'); "
            "or write the document as TOML or JSON"
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidDocument(f"invalid YAML: {problem}", line=line) from None
    except (ValueError, TypeError, AttributeError, IndexError, OverflowError) as exc:
        # PyYAML's constructors raise these for badly tagged scalars ("!!int three")
        raise InvalidDocument(f"invalid YAML: a value cannot be read ({exc})", line=1) from None
    return data, yaml_lines(node)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Lines:
    """``{path: line}`` for one document, and the duplicate keys found on the way."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {(): 1}
        self.duplicates: list[tuple[Path, int]] = []

    def note(self, path: Path, line: int, *, mapping_key: bool = False) -> None:
        if path in self.lines:
            if mapping_key:
                self.duplicates.append((path, line))
            return
        self.lines[path] = line

    def line_of(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]


class _Scanner:
    """A cursor over text that knows the line of any offset."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.found = Lines()

    def line(self) -> int:
        return bisect.bisect_right(self._starts, self.pos)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip(self, chars: str) -> None:
        """Skip ``chars`` and comments (``#`` outside a string; never in valid JSON)."""
        text = self.text
        while self.pos < len(text):
            if text[self.pos] in chars:
                self.pos += 1
            elif text[self.pos] == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise ValueError(f"expected {token!r} at offset {self.pos}")
        self.pos += len(token)

    def string(self) -> str:
        """Skip a quoted string (JSON, TOML basic or literal, one- or multi-line); its raw text."""
        text, start = self.text, self.pos
        quote = text[start]
        if text.startswith(quote * 3, start):
            end = text.find(quote * 3, start + 3)
            while quote == '"' and end > 0 and _escaped(text, end):
                end = text.find(quote * 3, end + 1)
            if end < 0:
                raise ValueError("unterminated string")
            while text.startswith(quote, end + 3):  # up to two quotes may end the content
                end += 1
            self.pos = end + 3
        else:
            end = start + 1
            while end < len(text) and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            self.pos = end + 1
        return text[start : self.pos]


def _escaped(text: str, at: int) -> bool:
    backslashes = 0
    while at - backslashes - 1 >= 0 and text[at - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _scan(text: str, walk: Callable[[_Scanner, Path], None]) -> Lines:
    """The lines of every key, TOML table header and array item (duplicate keys noted)."""
    scan = _Scanner(text)
    with contextlib.suppress(ValueError, IndexError, RecursionError, tomllib.TOMLDecodeError):
        walk(scan, ())
    return scan.found


def _toml_document(scan: _Scanner, table: Path) -> None:
    arrays: dict[Path, int] = {}
    while True:
        scan.skip(" \t\r\n")
        if scan.pos >= len(scan.text):
            return
        line = scan.line()
        if scan.peek(2) == "[[":
            scan.pos += 2
            name = _key(scan)
            scan.expect("]]")
            index = arrays.get(name, -1) + 1
            arrays[name] = index
            table = (*name, index)
            _note_prefixes(scan, table, line)
        elif scan.peek() == "[":
            scan.pos += 1
            table = _key(scan)
            scan.expect("]")
            _note_prefixes(scan, table, line)
        else:
            key = (*table, *_key(scan))
            _note_prefixes(scan, key, line)
            scan.expect("=")
            _value(scan, key)


def _value(scan: _Scanner, path: Path) -> None:
    """Skip one JSON value, or one TOML value after its ``=``, noting its keys and items.

    One scanner does both: a JSON object and a TOML inline table differ only by
    their key (one string, or a dotted key) and by ``:`` or ``=`` after it.
    """
    scan.skip(" \t\r\n")
    opening = scan.peek()
    if opening in ('"', "'"):
        scan.string()
    elif opening in ("{", "["):
        scan.pos += 1
        seen: set[Path] = set()
        while True:
            scan.skip(" \t\r\n,")
            if scan.peek() in ("}", "]"):
                scan.pos += 1
                return
            line = scan.line()
            if opening == "[":
                item: Path = (*path, len(seen))
                seen.add(item)
                scan.found.note(item, line)
            else:
                key = _key(scan)
                item = (*path, *key)
                _note_prefixes(scan, item[:-1], line)
                scan.found.note(item, line, mapping_key=key in seen)
                seen.add(key)
                if scan.peek() not in (":", "="):
                    raise ValueError(f"expected ':' or '=' at offset {scan.pos}")
                scan.pos += 1
            _value(scan, item)
    else:  # a number, a boolean, null or a date: up to the end of the value
        while scan.pos < len(scan.text) and scan.text[scan.pos] not in ",]}\r\n#":
            scan.pos += 1


def _note_prefixes(scan: _Scanner, path: Path, line: int) -> None:
    for end in range(1, len(path) + 1):
        scan.found.note(path[:end], line)


def _key(scan: _Scanner) -> Path:
    """A key with the whitespace around it: a JSON string, or a TOML dotted key (``a."b.c".d``)."""
    parts: list[str | int] = []
    while True:
        scan.skip(" \t")
        if scan.peek() in ('"', "'"):
            parts.append(_unquote(scan.string()))
        else:
            match = _BARE_KEY.match(scan.text, scan.pos)
            if match is None:
                raise ValueError(f"expected a key at offset {scan.pos}")
            parts.append(match.group())
            scan.pos = match.end()
        scan.skip(" \t")
        if scan.peek() != ".":
            return tuple(parts)
        scan.pos += 1


def _unquote(raw: str) -> str:
    with contextlib.suppress(ValueError):  # a JSON string, or a TOML one with JSON's escapes
        return str(json.loads(raw))
    value: Any = tomllib.loads(f"k = {raw}")["k"]  # a 'literal' string, or a \U escape
    return str(value)


def yaml_lines(root: Any) -> Lines:
    """Lines of every key and item of a composed PyYAML node tree (duplicate keys noted)."""
    found = Lines()
    for path, line, duplicate in _yaml_walk(root, ()):
        found.note(path, line, mapping_key=duplicate)
    return found


def _yaml_walk(node: Any, path: Path) -> Iterator[tuple[Path, int, bool]]:
    kind = type(node).__name__
    if kind == "MappingNode":
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            yield (*path, key), key_node.start_mark.line + 1, key in seen
            seen.add(key)
            yield from _yaml_walk(value_node, (*path, key))
    elif kind == "SequenceNode":
        for index, item in enumerate(node.value):
            yield (*path, index), item.start_mark.line + 1, False
            yield from _yaml_walk(item, (*path, index))
