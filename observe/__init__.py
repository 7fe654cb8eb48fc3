"""Observability: subscribers to an engine's commits (``subscribe.py``), the log
followed live from any process (``follow.py``), metrics read from the log
(``metrics.py``), the workflow logger (``logger.py``), and OpenTelemetry traces
(``otel.py``, with the ``otel`` extra: imported only by those who use it).

The runtime tells subscribers of its commits through ``engine/hooks.py``; nothing
here changes what a workflow does.

May import: ``duralog.engine``, ``duralog.replay``, ``duralog.store`` and
``duralog.errors``. Never ``duralog.patterns`` nor the public face.
"""
