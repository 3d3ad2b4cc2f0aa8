"""The `dataset` job kind: one dataset version built on the worker pool (durable, resumable)."""
from __future__ import annotations

import time

from bson import ObjectId

from media_service.contract import DATASET_KIND
from media_service.datasets.build import BuildResult, DatasetBuilder
from media_service.mongo import Job, MongoManager
from media_service.redact import Redactor
from media_service.worker_pool import JobContext


def queue_dataset_job(mongo: MongoManager, settings, version_id: ObjectId) -> tuple[bool, Job]:
    # Each task has its own limit of attempts ([Dataset] task_attempts); the job gets one more.
    return mongo.jobs.enqueue_dataset_build(version_id, settings.dataset.task_attempts + 1)


class DatasetJobHandler:
    kind = DATASET_KIND

    def __init__(self, mongo: MongoManager, storage, settings):
        self.mongo = mongo
        self.builder = DatasetBuilder(mongo, storage, settings)
        self.redact = Redactor.from_settings(settings)

    def label(self, job: Job) -> str:
        return f"dataset={job.key}"

    def run(self, ctx: JobContext) -> BuildResult:
        version_id = ObjectId(ctx.job.params["version_id"])
        last = [0.0]

        def progress(fraction: float, stage: str) -> None:  # at most once a second, and at the end
            if fraction >= 1.0 or time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                # No resume point of its own: a resumed build skips the tasks its taskStatus marks complete.
                ctx.checkpoint({}, stage, round(min(fraction, 0.99) * 100, 1))
                self.mongo.set_dataset_progress(version_id, min(fraction, 0.99) * 100)

        result = self.builder.build(version_id, check=ctx.check, progress=progress,
                                    before_finish=ctx.stop_if_cancel_requested)
        ctx.report({"already_complete": result.already_complete, "tasks": result.tasks,
                    "tasks_built": result.tasks_built, "images": result.images, "size": result.size,
                    "dropped_boxes": result.dropped_boxes, "objects_written": result.writes})
        return result

    def on_failed(self, job: Job, error: Exception, final: bool) -> None:
        if final:
            code = getattr(error, "code", None)
            self.mongo.fail_dataset(ObjectId(job.params["version_id"]),
                                    self.redact.text(f"{code}: {error}" if code else str(error)))

    def on_cancelled(self, job: Job) -> None:
        self.mongo.fail_dataset(ObjectId(job.params["version_id"]), "the build was cancelled on request")
