"""Helpers for the search tests: a search driven step by step and stopped part way, as Ctrl-C stops one."""

from __future__ import annotations

from typing import Any


def interrupt_after(store: Any, spec: Any, trials: int) -> None:
    """Run ``spec`` in-process until ``trials`` trials are told, then stop it as an interrupt does (a clean shutdown)."""
    from sweep import InProcessExecutor
    from sweep._expand import default_run_key
    from sweep.search import OptunaSearch, SearchController
    from sweep.search._cache import RunCache
    from sweep.search._service import begin_search

    begin_search(store, spec)
    search = OptunaSearch(spec, url=store.db_url, heartbeat_s=1)
    controller = SearchController(store=store, spec=spec, search=search, executor=InProcessExecutor(),
                                  cache=RunCache(), run_key=default_run_key())
    while controller.report().trials < trials:
        controller.step()
    controller.request_stop()
    assert controller.run().status == "interrupted"
    search.close()
