"""Streams in the pure core: workflow writes replay without being made again, and a
reader that reads the log in any batches gets the same stream as one that reads it
whole (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import run_in_memory

import duralog
from duralog.replay.checker import replay_history
from duralog.replay.streams import MAX_KEY_LENGTH, StreamItem, check_key, entries_of
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.events import LogEntry


@duralog.step
def think(task: int) -> int:
    return task


@duralog.workflow
async def streamer(rounds: list[list[str]]) -> int:
    """Each round runs its tasks together; task ``t`` writes to its key, calls a step,
    writes again. The last key written is closed at the end."""

    async def task(t: int, key: str) -> None:
        duralog.write_stream(key, [t, "before"])
        await think(t)
        duralog.write_stream(key, [t, "after"])

    t = 0
    for keys in rounds:
        await asyncio.gather(*(task(t + i, key) for i, key in enumerate(keys)))
        t += len(keys)
    duralog.close_stream("a")
    return t


def values(items: list[StreamItem]) -> list[object]:
    return [codec.decode(item.raw) for item in items if item.raw is not None]


def batched(key: str, log: list[LogEntry], cuts: list[int]) -> list[StreamItem]:
    """The stream as a reader reading ``log`` in batches cut at ``cuts`` sees it."""
    items: list[StreamItem] = []
    bounds = [0, *sorted(set(cuts)), len(log)]
    for start, end in itertools.pairwise(bounds):
        for item in entries_of(key, log[start:end]):
            items.append(item)
            if item.ended:
                return items
    return items


programs = st.lists(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3), max_size=4)


@given(programs, st.lists(st.integers(0, 5), max_size=12), st.lists(st.integers(0, 60)))
def test_any_run_replays_its_writes_and_any_batching_reads_the_same_stream(
    rounds: list[list[str]], picks: list[int], cuts: list[int]
) -> None:
    order = iter(picks)
    log = run_in_memory(streamer, rounds, pick=lambda n: next(order, 0))
    instance, state = replay_history(streamer, log)  # matches every write: makes none again
    assert instance.finished and state.status == "COMPLETED"
    for key in ("a", "b"):
        whole = entries_of(key, log)
        assert whole[-1].ended  # closed ("a") or ended with the run ("b")
        assert batched(key, log, [c % (len(log) + 1) for c in cuts]) == whole
        written = [
            codec.decode(e.event.value)
            for e in log
            if isinstance(e.event, ev.StreamWritten) and e.event.key == key
        ]
        assert values(whole) == written
        # Each task's two values, "before" first, whatever the order its steps ran in.
        tasks = [t for t, keys in enumerate(k for r in rounds for k in r) if keys == key]
        assert sorted(v for v in written if v[1] == "before") == [[t, "before"] for t in tasks]
        for t in tasks:
            assert written.index([t, "before"]) < written.index([t, "after"])


def test_the_stream_ends_at_its_first_close_and_later_values_are_not_read() -> None:
    raw = codec.encode("x")
    log = [
        LogEntry(2, 0.0, ev.StreamWritten(key="k", value=raw)),
        LogEntry(3, 0.0, ev.StepStreamed(step_seq=9, attempt=1, key="k", closed=True)),
        LogEntry(4, 0.0, ev.StreamWritten(key="k", value=raw)),
    ]
    assert entries_of("k", log) == [StreamItem(2, raw), StreamItem(3, None, True, 9, 1)]


@pytest.mark.parametrize("key", ["", "x" * (MAX_KEY_LENGTH + 1), "a\tb", "\ud800", None, 7])
def test_a_bad_key_is_refused_with_where(key: object) -> None:
    with pytest.raises(duralog.ConfigurationError, match="workflow 'w'"):
        check_key(key, "workflow 'w'")


def test_keys_may_be_any_printable_text() -> None:
    for key in ("tokens", "x" * MAX_KEY_LENGTH, "réponse 🤖", "a/b:c"):
        assert check_key(key, "here") == key
