"""Run on boot (systemd): finish every job a crash left queued or running, every dataset version
whose build began and did not end, and every upload Node left at status 0 because its request
never reached the service (sent again now, as Node would have sent it).

Safe to run twice and while the service runs: jobs are claimed through the same leases, so each
is run by exactly one worker, and a job that finished is never touched again.

Exit codes (media_service/bootstrap.py): 0 every job ended (or, with --no-run, was made due), 1 some
were still unfinished at --timeout, 2 a bad command line, 69 the database cannot be reached, 78 a
configuration error.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import timedelta

from tqdm import tqdm

from app import create_app
from media_service.bootstrap import ExitCode, bootstrap, ensure_local_api_key
from media_service.contract import FINAL_STATES
from media_service.datasets.handler import queue_dataset_job
from media_service.services import Services
from mongo_manager import utcnow

log = logging.getLogger("warm_start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="give up waiting after this many seconds")
    parser.add_argument("--no-run", action="store_true",
                        help="only make the jobs due now; leave running them to the service")
    args = parser.parse_args(argv)
    started = bootstrap()
    settings, services = started.settings, started.services
    try:
        requeue_uploads_left_waiting(services, settings)
        kinds = [h.kind for h in services.handlers()]
        for version_id in services.mongo.pending_dataset_versions():  # a build with no job left (e.g. lost)
            created, _ = queue_dataset_job(services.mongo, settings, version_id)
            if created:
                log.info("dataset version %s: its build began and did not end; queued again", version_id)
        pending = services.mongo.jobs.unfinished(kinds)
        if not pending:
            log.info("nothing to resume")
            return ExitCode.OK
        ids = [job.id for job in pending]
        services.mongo.jobs.make_due_now(ids)
        log.info("%d unfinished jobs: %s", len(ids), ", ".join(ids))
        if args.no_run:
            return ExitCode.OK
        services.start_workers()
        deadline = time.monotonic() + args.timeout
        states: dict[str, str] = {}
        with tqdm(total=len(ids), desc="resuming jobs", unit="job") as bar:
            while len(states) < len(ids) and time.monotonic() < deadline:
                for job_id in ids:
                    job = services.mongo.jobs.get(job_id)
                    if job_id not in states and job.state in FINAL_STATES:
                        states[job_id] = job.state
                        bar.update(1)
                time.sleep(0.5)
        for job_id in ids:
            log.info("%s: %s", job_id, states.get(job_id, "still unfinished (timeout)"))
        return ExitCode.OK if len(states) == len(ids) else ExitCode.FAILED
    finally:
        services.close()


def node_fields(upload: dict, key: str) -> dict[str, str]:
    """The processContent request Node sends for this upload (CONTRACT §1), from the parameters Node
    set on the upload doc."""
    return {"upload_id": str(upload["_id"]), "auth_key": key, "project_id": str(upload.get("projectId", "")),
            "frame_rate": str(upload.get("frame_rate", "")), "content_path": str(upload.get("sourceFilePath", "")),
            "force_write": str(upload.get("force_write") or 0), "content_type": str(upload.get("content_type") or 1),
            "request_type": str(upload.get("request_type") or 0),
            "auto_anno_version": str(upload.get("request_annotation_version") or 0)}


def requeue_uploads_left_waiting(services: Services, settings) -> None:
    """Uploads at status 0 with no job, older than `[Jobs] warm_start_min_age_seconds`: their request
    goes through the route itself (the same checks, the same durable job, a rejection recorded on
    the upload doc). The job id is the upload's, so nothing is ever queued twice."""
    older_than = utcnow() - timedelta(seconds=settings.jobs.warm_start_min_age_seconds)
    waiting = services.mongo.uploads_left_waiting(older_than)
    if not waiting:
        return
    settings = ensure_local_api_key(settings)
    client = create_app(settings, services, start_workers=False).test_client()
    for upload in waiting:
        answer = client.post("/api/processContent", data=node_fields(upload, settings.app.api_keys[0]))
        message = (answer.get_json(silent=True) or {}).get("message", answer.status_code)
        log.info("upload %s was left at status 0 with no job (Node's request never arrived): sent again, %s %s",
                 upload["_id"], answer.status_code, message)


if __name__ == "__main__":
    sys.exit(main())
