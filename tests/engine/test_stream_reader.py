"""The stream reader against a real log (hypothesis): whatever the batches the log is
appended in and however the reads interleave with them, a reader following the log
gets exactly the values written to its key, in order, then the end; a run continued
as new while it reads is finished from its archive, never mixed with the next run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from duralog.engine.streams import follow, run_start
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow
from duralog.store.events import LogEntry
from duralog.store.open import open_store

T0 = 1_700_000_000.0
#: What one event of a batch is: the workflow writes to the key or to another key, or
#: the step at seq 2 writes to the key.
WRITES = st.sampled_from(["workflow", "step", "other key"])
PLANS = st.lists(st.tuples(st.lists(WRITES, max_size=4), st.integers(0, 4)), max_size=6)


def started(run: int = 1) -> LogEntry:
    return ev.started_entry(T0, name="streamer", args=codec.encode([]), run=run)


@settings(max_examples=40, deadline=None)
@given(PLANS, st.booleans())
def test_a_follower_gets_the_written_values_in_order_then_the_end(
    plan: list[tuple[list[str], int]], continued: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(str(Path(folder) / "log.db"), durability="normal")
        try:
            (fence,) = store.create_workflows(
                [NewWorkflow("w", "streamer", started(), owner="w1", lease_seconds=60)]
            )
            assert fence is not None
            step = LogEntry(2, T0, ev.StepScheduled(name="generate", args=codec.encode([])))
            assert store.append([Append("w", fence, [step])]) == [True]
            reader = follow(store, "w", "k", 5, run_start(store, "w"))
            seq, written, read = 2, [], []
            for batch, reads in plan:
                entries = []
                for what in batch:
                    seq += 1
                    value = codec.encode(seq)
                    if what == "workflow":
                        event: ev.Event = ev.StreamWritten(key="k", value=value)
                    elif what == "step":
                        event = ev.StepStreamed(step_seq=2, attempt=1, key="k", value=value)
                    else:
                        event = ev.StreamWritten(key="other", value=value)
                    entries.append(LogEntry(seq, T0 + seq, event))
                    if what != "other key":
                        written.append(seq)
                assert store.append([Append("w", fence, entries)]) == [True]
                for _ in range(min(reads, len(written) - len(read))):  # never waits
                    read.append(next(reader))
            seq += 1
            if continued:  # the run ends; the next one writes to its own stream "k"
                end = LogEntry(seq, T0 + seq, ev.ContinuedAsNew(args=codec.encode([])))
                assert store.continue_as_new(Append("w", fence, [end]), "w~run1", started(2))
                later = LogEntry(2, T0, ev.StreamWritten(key="k", value=codec.encode("next")))
                assert store.append([Append("w", fence, [later])]) == [True]
            else:
                end = LogEntry(seq, T0 + seq, ev.WorkflowCompleted(result=codec.encode(None)))
                assert store.append([Append("w", fence, [end])]) == [True]
            items = read + list(reader)
        finally:
            store.close()
    assert [codec.decode(i.raw) for i in items if i.raw is not None] == written
    assert items[-1].ended and items[-1].seq == seq
