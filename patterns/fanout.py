"""``duralog.map``: bounded-concurrency fan-out over a list, from workflow code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar, overload

from ._composite import check_max_parallel

T = TypeVar("T")
R = TypeVar("R")


@overload
async def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    max_parallel: int | None = None,
    return_exceptions: Literal[False] = False,
) -> list[R]: ...
@overload
async def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    max_parallel: int | None = None,
    return_exceptions: bool,
) -> list[R | Exception]: ...
async def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    max_parallel: int | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """Call ``fn(item)`` for every item, at most ``max_parallel`` at once; results in input order.

    ``fn`` is usually a ``@duralog.step`` (each call a durable step in the log) or a
    workflow (each call a child workflow); any async function of one argument works.
    Items start in input order, a new one as soon as a running one finishes, so the
    calls (and their seqs) replay identically. ``max_parallel=None`` starts them all
    at once, like ``asyncio.gather``.

    When a call fails, no further item starts, the running calls finish, and the
    first failure is raised (with a note naming the item's index). With
    ``return_exceptions=True`` every item runs and a failed one's exception takes
    its place in the result list.

    Example:
        ```python
        @duralog.workflow
        async def thumbnails(urls: list[str]) -> list[str]:
            return await duralog.map(make_thumbnail, urls, max_parallel=8)
        ```

    Outside a workflow it runs the calls on the current event loop, with the same bound.
    """
    values = list(items)
    limit = check_max_parallel("duralog.map", max_parallel) or len(values)
    results: list[Any] = [None] * len(values)
    failures: list[Exception] = []
    position = 0

    async def lane() -> None:
        nonlocal position
        while position < len(values) and not failures:
            index = position
            position += 1
            try:
                results[index] = await fn(values[index])
            except Exception as exc:
                if return_exceptions:
                    results[index] = exc
                else:
                    exc.add_note(f"in duralog.map, item {index} of {len(values)}")
                    failures.append(exc)

    lanes = [asyncio.ensure_future(lane()) for _ in range(min(limit, len(values)))]
    try:
        await asyncio.gather(*lanes)
    finally:
        # Anything but an Exception (a cancellation, a divergence) ends the gather
        # at once: the other lanes must not go on taking items behind it.
        for other in lanes:
            other.cancel()
    if failures:
        raise failures[0]
    return results
