"""Authoring patterns built on the runtime: DAGs, pipelines, sagas, fan-out, circuit
breakers, injected resources and workflow documents (TOML, JSON, YAML).

Each is plain workflow and step code on the runtime's public API; the circuit breaker
and injected resources wrap step attempts through the runtime's ``engine/hooks.py``.

May import: ``duralog.engine``, ``duralog.replay``, ``duralog.store`` and
``duralog.errors``. Never ``duralog.observe`` nor the public face.
"""
