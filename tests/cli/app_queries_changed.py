"""``qa_counter`` changed so that it no longer replays its histories: it sleeps where
the recorded runs called ``qa_add``. Loaded with ``--app app_queries_changed`` (never
in the same process as ``app_queries``)."""

from __future__ import annotations

import duralog


@duralog.workflow(name="qa_counter")
async def counter(values: list[int]) -> int:
    duralog.on_query("total", lambda: 0)
    await duralog.sleep(5)
    return 0
