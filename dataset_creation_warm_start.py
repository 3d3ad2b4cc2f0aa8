"""Run on boot (systemd): finish every job a crash left queued or running, and every dataset
version whose build began and did not end.

Safe to run twice and while the service runs: jobs are claimed through the same leases, so each
is run by exactly one worker, and a job that finished is never touched again.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from tqdm import tqdm

from media_service.config import ConfigError, load_settings
from media_service.contract import FINAL_STATES
from media_service.datasets.job import queue_dataset_job
from media_service.logging_setup import configure_logging
from media_service.services import Services

log = logging.getLogger("warm_start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="give up waiting after this many seconds")
    parser.add_argument("--no-run", action="store_true",
                        help="only make the jobs due now; leave running them to the service")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets(), settings.log_format)
    services = Services.open(settings)
    try:
        kinds = [h.kind for h in services.handlers()]
        for version_id in services.mongo.pending_dataset_versions():  # a build with no job left (e.g. lost)
            created, _ = queue_dataset_job(services.mongo, settings, version_id)
            if created:
                log.info("dataset version %s: its build began and did not end; queued again", version_id)
        pending = services.mongo.find_unfinished_jobs(kinds)
        if not pending:
            log.info("nothing to resume")
            return 0
        ids = [job["_id"] for job in pending]
        services.mongo.make_jobs_due_now(ids)
        log.info("%d unfinished jobs: %s", len(ids), ", ".join(ids))
        if args.no_run:
            return 0
        services.start_workers()
        deadline = time.monotonic() + args.timeout
        states: dict[str, str] = {}
        with tqdm(total=len(ids), desc="resuming jobs", unit="job") as bar:
            while len(states) < len(ids) and time.monotonic() < deadline:
                for job_id in ids:
                    job = services.mongo.get_job(job_id)
                    if job_id not in states and job["state"] in FINAL_STATES:
                        states[job_id] = job["state"]
                        bar.update(1)
                time.sleep(0.5)
        for job_id in ids:
            log.info("%s: %s", job_id, states.get(job_id, "still unfinished (timeout)"))
        return 0 if len(states) == len(ids) else 1
    finally:
        services.close()


if __name__ == "__main__":
    sys.exit(main())
