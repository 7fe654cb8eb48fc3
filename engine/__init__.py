"""The runtime: the engine, its worker, step execution, retries, timers, leases, handles.

What runs workflows: ``Engine`` (starts, looks up, closes), the ``Worker`` (claims
workflows and keeps their leases), ``Execution`` (one workflow in memory: its log
tail, its activations, its steps), the committers (group commit), queues and
schedules, and what workflow and step code calls (``api.py``, ``decorators.py``).

May import: ``duralog.replay``, ``duralog.store`` and ``duralog.errors``. Never
``duralog.patterns``, ``duralog.observe`` nor the public face: they plug in through
``hooks.py`` (commit listeners, attempt guards), and ``tests/test_layers.py`` checks it.
"""
