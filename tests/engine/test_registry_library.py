"""The other test module with a workflow called ``checkout`` (see
``test_registry_shop.py``): a library's, in a registry of its own. Both modules load
in one process; here the two engines also run side by side."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import load_app

import duralog

registry = duralog.Registry()


@duralog.step(name="registry_lend")
def lend(title: str) -> str:
    return f"lent {title!r}"


@duralog.workflow(name="checkout", registry=registry)
async def checkout(title: str) -> str:
    return await lend(title)


def test_the_librarys_checkout_runs_on_its_own_engine(tmp_path: Path) -> None:
    with duralog.Engine(
        str(tmp_path / "library.db"), registry=registry, durability="normal", poll_interval=0.05
    ) as engine:
        assert engine.run(checkout, "Dune", timeout=20) == "lent 'Dune'"
        assert engine.queues == {}  # the shop's queue is in the shop's registry only


def test_both_checkouts_run_side_by_side(tmp_path: Path) -> None:
    shop = load_app(Path(__file__).parent / "test_registry_shop.py", "registry_shop_app")
    options = {"durability": "normal", "poll_interval": 0.05}
    with (
        duralog.Engine(str(tmp_path / "l.db"), registry=registry, **options) as library,  # type: ignore[arg-type]
        duralog.Engine(str(tmp_path / "s.db"), registry=shop.registry, **options) as store,  # type: ignore[arg-type]
    ):
        lent = library.start("checkout", "Emma", id="c-1")
        charged = store.start("checkout", 42, id="c-1")
        assert lent.result(timeout=20) == "lent 'Emma'"
        assert charged.result(timeout=20) == "charged 42"


def test_one_registry_still_refuses_two_workflows_under_one_name() -> None:
    async def other(title: str) -> str:
        return title

    with pytest.raises(duralog.RegistrationError, match="two workflows are named 'checkout'"):
        duralog.workflow(name="checkout", registry=registry)(other)
