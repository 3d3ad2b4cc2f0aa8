"""The try-it form's retention (`[Jobs] try_it_retention_hours`): what it made goes once expired.

The jobs page's try-it form (web/operator/try_it.py) records each try (`TryItUpload`) before it saves or
creates anything. The sweep removes each try older than the retention: its task videos in storage,
frame and task docs, the job, upload and project docs, and the folder the form saved the video in.
Only what a record names is touched, and a try whose job is still queued or running waits for a
later sweep. Every worker process runs the sweep when it starts and then periodically (a thread
beside the worker pool); each try is claimed with a lease first, so processes on several hosts
never remove one try at the same time.
"""
from __future__ import annotations

import logging
import shutil
import threading
from datetime import timedelta

from media_service.contract import ACTIVE_STATES, content_job_id
from media_service.errors import PathRefused
from media_service.mongo import MongoManager, utcnow
from media_service.paths import resolve_inside

log = logging.getLogger(__name__)

MAX_INTERVAL_SECONDS = 3600.0  # a try lives at most its retention plus this (or twice a shorter retention)


def sweep(mongo: MongoManager, storage, settings) -> int:
    """Remove every expired try whose job has ended; returns how many were removed."""
    hours = settings.jobs.try_it_retention_hours
    if hours <= 0:
        return 0  # 0 keeps them for ever
    removed = 0
    for record in mongo.expired_try_its(utcnow() - timedelta(hours=hours)):
        job = mongo.jobs.get(content_job_id(record["_id"]))
        if job and job.state in ACTIVE_STATES:
            continue  # never pull documents from under a run; the next sweep sees it ended
        if mongo.claim_try_it(record["_id"], settings.jobs.lease_seconds) is None:
            continue  # another process is removing it
        try:
            _remove(mongo, storage, settings, record)
            removed += 1
        except Exception as exc:  # storage or database trouble: the lease expires, a later sweep retries
            log.warning("try-it upload %s could not be removed yet: %s", record["_id"], exc)
    return removed


def _remove(mongo: MongoManager, storage, settings, record: dict) -> None:
    upload_id, project_id = record["_id"], record["projectId"]
    tasks = mongo.upload_tasks(upload_id)
    for task in tasks:  # objects first: a task doc left behind still names what to delete
        if task.get("S3_url"):
            storage.delete(storage.own_key(task["S3_url"]))
    mongo.delete_tasks(task["_id"] for task in tasks)
    if record.get("folder"):
        _remove_folder(settings, record["folder"])
    project_removed = mongo.forget_try_it(upload_id, project_id)
    log.info("try-it upload %s removed after its retention (%d tasks%s)", upload_id, len(tasks),
             ", its project" if project_removed else "; its project holds other uploads and stays")


def _remove_folder(settings, folder: str) -> None:
    """The folder the form saved the video in, only ever inside the content folder (a link is refused)."""
    root = settings.content_root().root
    try:
        path = resolve_inside(root, folder)
    except PathRefused:
        path = None
    if path is None or (root / folder).is_symlink():
        log.warning("try-it folder %s is not inside the content folder any more; left in place", folder)
        return
    shutil.rmtree(path, ignore_errors=False, onexc=_ignore_missing)


def _ignore_missing(function, path, exc: BaseException) -> None:
    if not isinstance(exc, FileNotFoundError):  # gone already (a concurrent sweep, a person)
        raise exc


class TryItSweeper(threading.Thread):
    """Sweeps at start, then every hour (or every retention, when shorter), until `stop`."""

    def __init__(self, mongo: MongoManager, storage, settings):
        super().__init__(name="try-it-sweeper", daemon=True)
        self.mongo, self.storage, self.settings = mongo, storage, settings
        self.interval = min(MAX_INTERVAL_SECONDS, settings.jobs.try_it_retention_hours * 3600)
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            try:
                sweep(self.mongo, self.storage, self.settings)
            except Exception as exc:  # the database away: try again at the next interval
                log.warning("try-it sweep failed: %s", exc)
            if self.stopping.wait(self.interval):
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
