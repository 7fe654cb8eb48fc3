"""The runtime: the engine, its worker, step execution, retries, timers, leases, handles.

- ``engine.py`` ``Engine`` (starts, looks up, closes) and ``starts.py`` (creating
  workflows); ``handle.py`` ``WorkflowHandle``.
- ``worker.py`` ``Worker`` (the loop, leases, executions) on ``claims.py`` (where a
  worker claims a workflow, queues, recovery); ``options.py`` ``WorkerOptions``.
- ``execution.py`` ``Execution`` (one workflow in memory) on ``steps.py`` (a step's
  attempts and retries) on ``tail.py`` (its uncommitted events); it sees the worker
  as ``host.py`` ``ExecutionHost``.
- ``attempts.py`` (one attempt), ``retry.py`` (where a retry is decided),
  ``committer.py`` (group commit), ``inbox.py``, ``clock.py``, ``lease.py``,
  ``threads.py``, ``queues.py``, ``schedules.py``; ``api.py`` and ``decorators.py``
  (what workflow and step code calls).

May import: ``duralog.replay``, ``duralog.store`` and ``duralog.errors``. Never
``duralog.patterns``, ``duralog.observe`` nor the public face: they plug in through
``hooks.py`` (commit listeners, attempt guards), and ``tests/test_layers.py`` checks it.
"""
