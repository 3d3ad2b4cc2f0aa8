"""The `content` job kind: run an accepted processContent request; record how it ended. The
`content_part` kind: one part of a long upload."""
from __future__ import annotations

from media_service.content.parts import PartRun
from media_service.content.pipeline import ALREADY_HAS_TASKS, ContentPipeline
from media_service.contract import (
    ALREADY_HAS_TASKS_CODE,
    CANCELLED_CODE,
    CONTENT_KIND,
    CONTENT_PART_KIND,
    ContentJobParams,
    ContentPartParams,
)
from media_service.errors import is_permanent
from media_service.mongo import Job, MongoManager
from media_service.redact import Redactor
from media_service.worker_pool import JobContext


class ContentJobHandler:
    kind = CONTENT_KIND

    def __init__(self, mongo: MongoManager, storage, settings, annotators=None):
        """`annotators`: the annotation feature's annotator factory, for request_type 1."""
        self.mongo = mongo
        self.pipeline = ContentPipeline(mongo, storage, settings, annotators)
        self.redact = Redactor.from_settings(settings)

    def label(self, job: Job) -> str:
        return f"upload={job.params['upload_id']} request_type={job.params.get('request_type')}"

    def run(self, ctx: JobContext) -> None:
        self.pipeline.run(ctx, ContentJobParams.from_doc(ctx.job.params))

    def on_failed(self, job: Job, error: Exception, final: bool) -> None:
        if not final:
            return  # the upload stays "processing" while a retry is due
        params = ContentJobParams.from_doc(job.params)
        reason = getattr(error, "code", None)
        if reason == ALREADY_HAS_TASKS:
            code = ALREADY_HAS_TASKS_CODE
        else:
            code = 422 if is_permanent(error) else 500
        message = self.redact.text(f"{reason}: {error}" if reason else f"processing failed: {error}")
        # A failed upload keeps no half set of tasks: the UI would show them as usable.
        self.pipeline.remove_video_tasks(params.project_id, params.video_name, upload_id=params.upload_id)
        self.mongo.record_upload_error(params.upload_id, code, message)

    def on_cancelled(self, job: Job) -> None:
        params = ContentJobParams.from_doc(job.params)
        self.pipeline.remove_video_tasks(params.project_id, params.video_name, upload_id=params.upload_id)
        self.mongo.record_upload_error(params.upload_id, CANCELLED_CODE, "processing was cancelled on request")


class ContentPartHandler:
    """The `content_part` job kind: one run of tasks of a long upload (content/parts.py). The upload's
    content job decides how the upload ends; a part only cuts its tasks, and removes them when it
    fails for good or is cancelled."""
    kind = CONTENT_PART_KIND

    def __init__(self, mongo: MongoManager, storage, settings, annotators=None):
        """`annotators`: the annotation feature's annotator factory, for request_type 1."""
        self.part = PartRun(ContentPipeline(mongo, storage, settings, annotators), mongo, settings)

    def label(self, job: Job) -> str:
        return f"upload={job.params['content']['upload_id']} part={job.params['part']['index'] + 1}"

    def run(self, ctx: JobContext) -> None:
        ctx.report(self.part.run(ctx, ContentPartParams.from_doc(ctx.job.params)))

    def on_failed(self, job: Job, error: Exception, final: bool) -> None:
        if final:
            self.part.remove_own_tasks(ContentPartParams.from_doc(job.params))

    def on_cancelled(self, job: Job) -> None:
        self.part.remove_own_tasks(ContentPartParams.from_doc(job.params))
