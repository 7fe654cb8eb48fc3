"""One of two test modules that each define a workflow called ``checkout``, each in
its own registry for its own engine (the other is ``test_registry_library.py``):
neither clashes with the other, nor with the default registry."""

from __future__ import annotations

from pathlib import Path

import duralog
from duralog.engine.queues import QUEUES
from duralog.replay.definitions import REGISTRY

registry = duralog.Registry()
orders = duralog.Queue("registry_orders", concurrency=1, registry=registry)


@duralog.step(name="registry_charge")
def charge(cents: int) -> str:
    return f"charged {cents}"


@duralog.workflow(name="checkout", registry=registry)
async def checkout(cents: int) -> str:
    return await charge(cents)


def test_the_shops_checkout_runs_on_its_own_engine(tmp_path: Path) -> None:
    with duralog.Engine(
        str(tmp_path / "shop.db"), registry=registry, durability="normal", poll_interval=0.05
    ) as engine:
        assert engine.run(checkout, 1999, timeout=20) == "charged 1999"
        assert engine.start("checkout", 5).result(timeout=20) == "charged 5"  # by name: ours
        queued = engine.start(checkout, 7, queue="registry_orders")  # its registry's queue
        assert queued.result(timeout=20) == "charged 7"
        assert engine.queues == {"registry_orders": orders}


def test_the_default_registry_holds_neither_the_workflow_nor_the_queue() -> None:
    assert "checkout" not in REGISTRY or REGISTRY.get("checkout") is not checkout
    assert "registry_orders" not in REGISTRY.declared(QUEUES)
