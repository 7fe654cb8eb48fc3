"""A workflow built from a TOML document and a registry of step types.

    python examples/config_workflow.py

``report.toml`` names steps by type, their fixed params, dependencies, retries and
timeouts; ``duralog.load_workflow`` checks it against the registry and registers
the workflow under the document's name, so any process that builds it at import
can run or replay it. One document, many instances: each start gives its inputs.
A broken document is refused at build time with the file, line and key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duralog

step_types = duralog.StepRegistry()


@step_types.add
@duralog.step
def fetch(table: str, region: str) -> list[str]:
    return [f"{table}-{region}-{i}" for i in range(2 if table == "users" else 3)]


@step_types.add
@duralog.step
def render(users: list[str], orders: list[str], region: str, currency: str) -> str:
    return f"{region}: {len(users)} users, {len(orders)} orders (amounts in {currency})"


DOCUMENT = Path(__file__).with_name("report.toml")
report = duralog.load_workflow(DOCUMENT, step_types)


def main() -> None:
    print(f"  built {report!r} from {DOCUMENT.name}")
    for task in report.tasks:
        step = task.step
        assert isinstance(step, duralog.Step)
        deps = f" after {', '.join(task.depends_on)}" if task.depends_on else ""
        print(
            f"    {task.name:<7} {step.name}{deps}: {step.retry.max_attempts} attempts, "
            f"timeout {step.timeout:g}s"
        )
    db = str(Path(tempfile.mkdtemp(prefix="duralog-config-")) / "reports.db")
    with duralog.Engine(db) as engine:
        for inputs in ({"region": "eu"}, {"region": "us", "currency": "USD"}):
            print(f"  {inputs} -> {engine.run(report, inputs, timeout=30)}")

    broken = DOCUMENT.read_text().replace('type = "render"', 'type = "rendr"')
    try:
        duralog.parse_workflow(broken, step_types, format="toml", source=DOCUMENT.name)
    except duralog.WorkflowConfigError as exc:
        print(f"  a typo is refused at build time:\n    {exc}")


if __name__ == "__main__":
    main()
