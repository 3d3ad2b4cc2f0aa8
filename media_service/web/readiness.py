"""GET /api/ready's checks: the database, the storage and this process's worker threads.

They run at once, each in its own thread, and the answer comes when all have answered or the
budget (`[App] ready_budget_seconds`) has passed, whichever is first: a probe with a 1 s timeout
always gets its answer, and a check still running then counts as unavailable.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait

from media_service.mongo import deadline

log = logging.getLogger(__name__)


def _database(svc, budget: float) -> str:
    started = time.perf_counter()
    with deadline(budget):  # this thread's own deadline, not the request's
        svc.mongo.ping()
    return f"answered in {1000 * (time.perf_counter() - started):.0f} ms"


def _storage(svc, budget: float) -> str:
    if svc.storage is None:
        raise RuntimeError("no storage configured")
    svc.storage.check(budget)
    return svc.storage.description


def run_checks(svc, budget: float) -> dict[str, dict]:
    """{"database": {"state": "ok"|"unavailable", "detail": ...}, "storage": ..., "workers": ...}
    ("workers" only in a process that runs them)."""
    checks: dict[str, dict] = {}
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ready")
    try:
        futures = {name: pool.submit(check, svc, budget) for name, check in
                   (("database", _database), ("storage", _storage))}
        wait(futures.values(), timeout=budget)
        for name, future in futures.items():
            if not future.done():
                checks[name] = {"state": "unavailable", "detail": f"no answer within {budget:g} s"}
            elif future.exception() is not None:
                detail = svc.redact.text(str(future.exception()))[:300]
                checks[name] = {"state": "unavailable", "detail": detail}
            else:
                checks[name] = {"state": "ok", "detail": future.result()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a check past its budget ends on its own deadline
    if svc.pool is not None:
        alive = svc.pool.alive()
        checks["workers"] = {"state": "ok" if alive == svc.pool.size else "unavailable",
                             "detail": f"{alive} of {svc.pool.size} alive"}
    for name, check in checks.items():
        if check["state"] != "ok":
            log.warning("readiness: %s unavailable: %s", name, check["detail"])
    return checks
