#!/bin/sh
''''exec "$(dirname "$0")/.venv/bin/python" "$0" "$@" # '''  # sh: run this file with the project's virtualenv
"""Build a training dataset from a reviewed dataset version: `./dataset_processor.py -v <version id>`.

The same build as `/api/createDataSet`: a durable `dataset` job, run here (or followed here when a
worker already runs it). Interrupted, it resumes where it stopped: run it again, or let the warm
start do it on boot.

Exit codes (media_service/bootstrap.py, the same in every entry point): 0 built, 1 failed (the
reason is printed and kept on the version's taskStatus), 2 bad or unknown version id, 3 already
complete (nothing to do), 69 the database cannot be reached, 78 a configuration error.
"""
import argparse
import logging
import sys
import threading
import time

from tqdm import tqdm

from media_service.bootstrap import ExitCode, bootstrap
from media_service.contract import FINAL_STATES, dataset_job_id
from media_service.datasets.build import parse_version_id
from media_service.datasets.handler import DatasetJobHandler, queue_dataset_job
from media_service.errors import DatasetError
from media_service.services import Services
from media_service.worker_pool import WorkerPool
from mongo_manager import Job

log = logging.getLogger("dataset_processor")
DONE, FAILED, BAD_ID, ALREADY_COMPLETE = ExitCode.OK, ExitCode.FAILED, ExitCode.BAD_ARGUMENT, ExitCode.ALREADY_COMPLETE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a training dataset from a reviewed dataset version.",
                                     epilog="Exit codes: 0 built, 1 failed, 2 bad or unknown id, 3 already complete, "
                                            "69 database unreachable, 78 configuration error.")
    parser.add_argument("-v", "--version-id", required=True, help="AnnotationDatasetVersion id (24 hex digits)")
    args = parser.parse_args(argv)
    try:
        version_id = parse_version_id(args.version_id)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_ID
    services = bootstrap().services
    try:
        return build(services, version_id)
    finally:
        services.close()


def build(services: Services, version_id) -> int:
    mongo, settings = services.mongo, services.settings
    version = mongo.get_dataset_version(version_id)
    if version is None:
        print(f"error: no dataset version {version_id}", file=sys.stderr)
        return BAD_ID
    if (version.get("taskStatus") or {}).get("state") == "complete":
        print(f"dataset version {version_id} is already complete ({version.get('imageCount', 0)} images)")
        return ALREADY_COMPLETE
    queue_dataset_job(mongo, settings, version_id)
    job_id = dataset_job_id(version_id)
    pool = WorkerPool(mongo, settings, [DatasetJobHandler(mongo, services.storage, settings)], threads=1)
    claimed = pool.claim(job_id)
    if claimed is None:
        log.info("another worker is building this version: following its progress")
    else:
        threading.Thread(target=pool.run_claimed, args=(claimed,), name="dataset", daemon=True).start()
    with tqdm(total=100, unit="%", desc=f"dataset {version_id}", disable=not sys.stderr.isatty()) as bar:
        while True:
            job = mongo.jobs.get(job_id)
            bar.update(max(0.0, job.progress - bar.n))
            if job.state in FINAL_STATES:
                break
            time.sleep(0.5)
    return summarise(job, mongo.get_dataset_version(version_id))


def summarise(job: Job, version: dict) -> int:
    if job.state != "done":
        print(f"dataset version {version['_id']} failed: {job.last_error}", file=sys.stderr)
        return FAILED
    result = job.result or {}
    if result.get("already_complete"):
        print(f"dataset version {version['_id']} is already complete")
        return ALREADY_COMPLETE
    yolo = (version.get("exportFormats") or {}).get("YOLO") or {}
    print(f"dataset version {version['_id']} built: {result.get('tasks')} tasks ({result.get('tasks_built')} in this "
          f"run), {version.get('imageCount')} images, {version.get('size')} bytes, {result.get('dropped_boxes')} boxes "
          f"dropped; exports: {yolo.get('file')}, sample {yolo.get('sample')}")
    return DONE


if __name__ == "__main__":
    sys.exit(main())
