"""A circuit breaker guards a step for the engines whose registry declares it, and
for no other engine in the process."""

from __future__ import annotations

from pathlib import Path

import duralog
from duralog.engine import hooks
from duralog.patterns.breaker import circuit_of

registry = duralog.Registry()
breaker = duralog.CircuitBreaker("registry_breaker", failure_threshold=1, reset_timeout=3600)
calls: list[str] = []


@duralog.step(
    name="registry_flaky",
    retry=duralog.RetryPolicy(max_attempts=1),
    circuit=breaker,
    registry=registry,
)
def flaky() -> str:
    calls.append("called")
    raise ValueError("down")


@duralog.workflow(name="registry_guarded", registry=registry)
async def guarded() -> list[str]:
    errors = []
    for _ in range(2):
        try:
            await flaky()
        except duralog.StepFailed as exc:
            errors.append(exc.error.type.rsplit(".", 1)[-1])
    return errors


def test_the_breaker_is_declared_in_its_registry_only() -> None:
    assert circuit_of(flaky, registry) is breaker
    assert circuit_of(flaky) is None  # not in the default registry
    assert hooks.guards_of(flaky, registry)
    assert not hooks.guards_of(flaky, duralog.Registry())


def test_only_the_engine_of_that_registry_opens_the_circuit(tmp_path: Path) -> None:
    options = {"durability": "normal", "poll_interval": 0.05}
    calls.clear()
    with duralog.Engine(str(tmp_path / "g.db"), registry=registry, **options) as engine:  # type: ignore[arg-type]
        # The first failure opens the circuit: the second attempt fails fast.
        assert engine.run(guarded, timeout=20) == ["ValueError", "CircuitOpen"]
    assert calls == ["called"]
    unguarded = duralog.Registry()
    unguarded.add(guarded)  # the same workflow, in a registry that declares no circuit
    calls.clear()
    with duralog.Engine(str(tmp_path / "u.db"), registry=unguarded, **options) as engine:  # type: ignore[arg-type]
        assert engine.run(guarded, timeout=20) == ["ValueError", "ValueError"]
    assert calls == ["called", "called"]
