"""Cron schedules: start a workflow once per tick, across every worker on the log.

A schedule lives in the store (``schedules`` table), so every worker sees it and a
restart keeps it. Workers look for due ticks when they poll; the tick's workflow
id is ``<schedule id>@<tick time, UTC ISO 8601>``, and the store creates it and
moves the schedule's last tick in one compare-and-set transaction, so a tick is
started once however many workers race for it (and even if it were attempted
twice, the id would make the second start a no-op).

Cron expressions are parsed by croniter (5 fields, or 6 with seconds last), in
the schedule's time zone, so "0 9 * * *" in "Europe/Paris" follows daylight
saving time.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import msgspec

from duralog.errors import ConfigurationError, DuralogError, PayloadError
from duralog.replay.definitions import REGISTRY, DeclarationKind, Registry, Workflow
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import EventStore, NewWorkflow, ScheduleRecord
from duralog.store.envelope import PayloadCodec

from .queues import QUEUES, Queue, place

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


def croniter(expression: str, start: dt.datetime) -> Any:
    """croniter's iterator over ``expression`` from ``start``: croniter (and dateutil)
    load on first use, not with ``import duralog``."""
    from croniter import croniter as iterator

    return iterator(expression, start)


log = logging.getLogger("duralog.schedules")

CatchUp = Literal["all", "latest", "none"]
CATCH_UP: tuple[str, ...] = get_args(CatchUp)
#: Most ticks one worker starts for one schedule per poll under ``catch_up="all"``;
#: the rest follow on the next polls.
MAX_TICKS_PER_POLL = 100
#: Under ``catch_up="none"``, a tick seen later than this after its time is skipped.
GRACE_SECONDS = 60.0

W = TypeVar("W", bound=Workflow[Any, Any])


class Schedule(msgspec.Struct, frozen=True):
    """A schedule declared in code with ``@duralog.schedule``; workers store it at start."""

    id: str
    cron: str
    workflow: str
    args: tuple[Any, ...] = ()
    catch_up: str = "latest"
    queue: str | None = None
    timezone: str = "UTC"
    partition: str | None = None

    def record(self, now: float, payload_codec: PayloadCodec | None) -> ScheduleRecord:
        """The store row for this schedule, first ticking after ``now``.

        Its arguments are a payload like any other: encrypted by the engine's
        ``payload_codec`` when it has one.
        """
        try:
            args = bytes(codec.encode(list(self.args), payload_codec))
        except PayloadError as exc:
            raise PayloadError(
                f"schedule {self.id!r}: its arguments must be JSON values ({exc})"
            ) from None
        return ScheduleRecord(
            id=self.id,
            cron=self.cron,
            workflow=self.workflow,
            args=args,
            last_tick=now,
            created_at=now,
            updated_at=now,
            queue=self.queue,
            catch_up=self.catch_up,
            timezone=self.timezone,
            partition_key=self.partition,
        )


#: The schedules declared with ``@duralog.schedule`` in a registry, by id.
SCHEDULES: DeclarationKind[str, Schedule] = DeclarationKind("schedules")


def make_schedule(
    schedule_id: str,
    cron: str,
    workflow: str,
    args: Sequence[Any] = (),
    *,
    catch_up: str = "latest",
    queue: str | None = None,
    timezone: str = "UTC",
    partition: str | None = None,
) -> Schedule:
    """A checked ``Schedule``: a bad cron, time zone or catch-up policy is a clear error
    (its queue and ``partition`` are checked against the queue: ``check_placement``)."""
    where = f"schedule {schedule_id!r}"
    if not isinstance(schedule_id, str) or not schedule_id or "@" in schedule_id:
        raise ConfigurationError(
            f"a schedule id is a non-empty string without '@', got {schedule_id!r}"
        )
    if catch_up not in CATCH_UP:
        raise ConfigurationError(
            f"{where}: catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}"
        )
    zone(timezone, where)
    if not isinstance(cron, str):
        raise ConfigurationError(f"{where}: the cron expression must be a string, got {cron!r}")
    from croniter import CroniterBadCronError, CroniterBadDateError

    try:
        croniter(cron, dt.datetime.now(dt.UTC))
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise ConfigurationError(
            f"{where}: {cron!r} is not a cron expression ({exc}); use five fields, "
            "'minute hour day-of-month month day-of-week', e.g. '*/15 * * * *'"
        ) from None
    try:  # a valid expression may still never match ("0 0 30 2 *": 30 February)
        croniter(cron, dt.datetime.now(zone(timezone, where))).get_next(float)
    except (CroniterBadDateError, ValueError) as exc:
        raise ConfigurationError(
            f"{where}: {cron!r} never matches a date ({exc}); check its day and month fields"
        ) from None
    return Schedule(schedule_id, cron, workflow, tuple(args), catch_up, queue, timezone, partition)


def check_placement(schedule_id: str, queue: Queue | None, partition: object) -> str | None:
    """The partition of a schedule's tick workflows on ``queue``, checked as a start's
    (``queues.place``): required on a partitioned queue, refused on any other."""
    try:
        return place(queue, partition=partition, now=0.0).partition
    except ConfigurationError as exc:
        raise ConfigurationError(f"schedule {schedule_id!r}: {exc}") from None


def schedule(
    cron: str,
    *,
    id: str | None = None,
    args: Sequence[Any] = (),
    catch_up: CatchUp = "latest",
    queue: Queue | str | None = None,
    timezone: str = "UTC",
    partition: str | None = None,
    registry: Registry | None = None,
) -> Callable[[W], W]:
    """Start the decorated workflow on every tick of ``cron``; put it above ``@workflow``.

    The workflow is called as ``workflow(tick, *args)``, ``tick`` being the tick's
    scheduled time (an aware ``datetime``). Every worker that imports the module
    stores the schedule when it starts; the first to see a tick starts it.

    Args:
        cron: a cron expression, e.g. ``"0 3 * * *"`` (03:00 every day).
        id: the schedule id (default the workflow's name); tick workflows are
            ``<id>@<tick in UTC, ISO 8601>``.
        catch_up: after downtime, ``"latest"`` (default) starts only the most
            recent missed tick, ``"all"`` every missed tick, oldest first, and
            ``"none"`` none (a tick more than a minute late is skipped).
        queue: start tick workflows on this queue (a ``duralog.Queue`` or the name of
            one; its limits apply). A worker refuses to start with a schedule whose
            queue is declared nowhere in its process.
        timezone: an IANA zone name for the cron fields (default UTC).
        partition: the partition of the tick workflows on a partitioned ``queue``
            (required there, refused on any other queue), as ``engine.start``'s.
        registry: where it is declared (default: the default registry); the workers of
            engines using that registry store it.
    """

    def register(workflow: W) -> W:
        if not isinstance(workflow, Workflow):
            raise ConfigurationError(
                "@duralog.schedule(...) goes above @duralog.workflow, on a workflow"
            )
        schedule_id = id or workflow.name
        if isinstance(queue, Queue):  # a name is checked by the worker that stores it
            check_placement(schedule_id, queue, partition)
        spec = make_schedule(
            schedule_id,
            cron,
            workflow.name,
            args,
            catch_up=catch_up,
            queue=queue.name if isinstance(queue, Queue) else queue,
            timezone=timezone,
            partition=partition,
        )
        (REGISTRY if registry is None else registry).declared(SCHEDULES)[spec.id] = spec
        return workflow

    return register


def zone(name: str, where: str) -> ZoneInfo:
    """The time zone called ``name``; an unknown one is a clear error."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (and sysconfig): when one is used

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"{where}: unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def due_ticks(record: ScheduleRecord, now: float) -> tuple[list[float], float]:
    """The ticks to start now and the schedule's new last tick (epoch seconds).

    Ticks after ``record.last_tick`` and at or before ``now`` are due; the catch-up
    policy picks which of them start. The new last tick covers the skipped ones.
    When clocks go back, a wall time that happens twice ("30 2 * * *" on that
    night) is one tick, as in classic cron: the second occurrence is skipped."""
    tz = zone(record.timezone, f"schedule {record.id!r}")
    first = next_tick(record)
    if first > now:
        return [], record.last_tick
    if record.catch_up == "all":
        ticks, it = [first], croniter(record.cron, dt.datetime.fromtimestamp(first, tz))
        while len(ticks) < MAX_TICKS_PER_POLL:
            tick = float(it.get_next(float))
            if tick > now:
                break
            ticks.append(tick)
        previous = [record.last_tick, *ticks[:-1]]
        kept = [t for t, p in zip(ticks, previous, strict=True) if not _repeat(record, p, t, tz)]
        return kept, ticks[-1]
    # get_prev() is strictly before its start: start a second past ``now``, cut to
    # the second, so a tick exactly at ``now`` counts and a later one cannot.
    ceiling = dt.datetime.fromtimestamp(math.floor(now) + 1, tz)
    latest = max(float(croniter(record.cron, ceiling).get_prev(float)), first)
    if latest > first:
        before = float(croniter(record.cron, dt.datetime.fromtimestamp(latest, tz)).get_prev(float))
    else:
        before = record.last_tick
    # A repeated wall time is skipped only if its first occurrence was started.
    repeated = before <= record.last_tick and _repeat(record, before, latest, tz)
    if repeated or (record.catch_up == "none" and now - latest > GRACE_SECONDS):
        return [], latest
    return [latest], latest


def _repeat(record: ScheduleRecord, previous: float, tick: float, tz: dt.tzinfo) -> bool:
    """Whether ``tick`` repeats the wall time of the tick before it, ``previous`` (clocks
    went back between them), for a cron that names its hours (an hourly or finer one
    runs in both)."""
    local = dt.datetime.fromtimestamp(tick, tz)
    if not local.fold or any(c in record.cron.split()[1] for c in "*/"):
        return False
    earlier = dt.datetime.fromtimestamp(previous, tz)
    return earlier.replace(tzinfo=None, fold=0) == local.replace(tzinfo=None, fold=0)


def next_tick(record: ScheduleRecord) -> float:
    """The first tick after the schedule's last one (epoch seconds)."""
    tz = zone(record.timezone, f"schedule {record.id!r}")
    return float(
        croniter(record.cron, dt.datetime.fromtimestamp(record.last_tick, tz)).get_next(float)
    )


def tick_id(schedule_id: str, tick: float) -> str:
    """The workflow id of one tick: ``<schedule id>@2026-11-25T03:00:00Z``."""
    when = dt.datetime.fromtimestamp(tick, dt.UTC)
    return f"{schedule_id}@{when.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def tick_workflows(
    record: ScheduleRecord,
    ticks: Sequence[float],
    now: float,
    payload_codec: PayloadCodec | None,
) -> list[NewWorkflow]:
    """The workflows to create for ``ticks``: ``workflow(tick, *args)``, unowned (their
    input sealed, as the schedule's arguments are, with ``payload_codec``)."""
    tz = zone(record.timezone, f"schedule {record.id!r}")
    extra = codec.decode(record.args, payload_codec=payload_codec)
    if not isinstance(extra, list):
        raise PayloadError(f"schedule {record.id!r}: its stored arguments are not a JSON array")
    items = []
    for tick in ticks:
        call = [dt.datetime.fromtimestamp(tick, tz), *extra]
        args_raw, kwargs_raw = codec.encode_call(call, {}, payload_codec)
        started = ev.started_entry(now, name=record.workflow, args=args_raw, kwargs=kwargs_raw)
        items.append(
            NewWorkflow(
                tick_id(record.id, tick),
                record.workflow,
                started,
                queue=record.queue,
                partition_key=record.partition_key,
            )
        )
    return items


def store_declared(
    store: EventStore, registry: Registry, queues: Mapping[str, Queue], now: float
) -> None:
    """Store the schedules declared in code (``@duralog.schedule``) whose workflow is in
    ``registry``; a schedule on a queue declared nowhere stops the worker at start."""
    known = {**registry.declared(QUEUES), **queues}
    for spec in list(registry.declared(SCHEDULES).values()):
        if spec.workflow not in registry:
            continue
        if spec.queue is not None and spec.queue not in known:
            raise ConfigurationError(
                f"schedule {spec.id!r} starts its workflows on queue {spec.queue!r}, "
                f"which is declared nowhere in this process (declared: "
                f"{', '.join(sorted(known)) or 'none'}); declare it with "
                f"duralog.Queue({spec.queue!r}, ...) or fix the name"
            )
        check_placement(spec.id, None if spec.queue is None else known[spec.queue], spec.partition)
        store.put_schedule(spec.record(now, store.payload_codec))


def fire_due(
    store: EventStore,
    registry: Registry,
    now: float,
    broken: dict[str, float],
    records: Sequence[ScheduleRecord] | None = None,
) -> list[NewWorkflow]:
    """Start every due tick of every schedule whose workflow is in ``registry``; returns
    the workflows created. ``records``: ``store.schedules()``, if the caller read it.

    A schedule that cannot fire (its time zone is unknown on this host, its cron
    never matches) is logged and left alone for a minute (``broken``: schedule id ->
    not before); the others go on."""
    created: list[NewWorkflow] = []
    for record in store.schedules() if records is None else records:
        if record.paused or record.workflow not in registry:
            continue
        if broken.get(record.id, 0.0) > now:
            continue
        try:
            ticks, last_tick = due_ticks(record, now)
            if last_tick == record.last_tick:
                continue
            items = tick_workflows(record, ticks, now, store.payload_codec)
            if not store.fire_schedule(record.id, record.last_tick, last_tick, items):
                continue
        except (DuralogError, ValueError, KeyError) as exc:
            broken[record.id] = now + 60.0
            log.error(
                "cannot fire schedule %r (%r, %s): %s; fix it with engine.schedule(...) "
                "or remove it with: duralog schedules delete %s",
                record.id,
                record.cron,
                record.timezone,
                exc,
                record.id,
            )
            continue
        broken.pop(record.id, None)
        created += items
    return created
