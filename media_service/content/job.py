"""The `content` job kind: queueing an accepted processContent request and running it."""
from __future__ import annotations

from media_service.content import image_source
import video_processor as vp
from media_service.content.pipeline import ContentPipeline
from media_service.web.content_request import ContentRequest, source_name
from media_service.jobs import JobContext, PermanentError
from mongo_manager import MongoManager, content_job_id

KIND = "content"
CANCELLED_CODE = 499


def queue_content_job(mongo: MongoManager, request: ContentRequest, frames_per_task: int,
                      max_attempts: int) -> tuple[bool, dict]:
    params = {
        "upload_id": request.upload_id, "project_id": request.project_id,
        "frame_rate": request.frame_rate, "force_write": request.force_write,
        "request_type": request.request_type, "content_type": request.content_type,
        "auto_anno_version": request.auto_anno_version, "frames_per_task": frames_per_task,
        "content_path": request.content_path, "source": str(request.source),
        "video_name": source_name(request.source),
    }
    return mongo.enqueue_job(content_job_id(request.upload_id), KIND, str(request.upload_id), params, max_attempts)


class ContentJobHandler:
    kind = KIND

    def __init__(self, mongo: MongoManager, storage, settings):
        self.mongo = mongo
        self.pipeline = ContentPipeline(mongo, storage, settings)

    def label(self, job: dict) -> str:
        return f"upload={job['params']['upload_id']}"

    def run(self, ctx: JobContext) -> None:
        self.pipeline.run(ctx)

    def permanent_error(self, exc: Exception) -> PermanentError | None:
        if isinstance(exc, vp.MediaError):
            return PermanentError(exc.code, str(exc))
        if isinstance(exc, image_source.ImageError):
            return PermanentError("unreadable_images", str(exc))
        return None

    def on_failed(self, job: dict, error: Exception, final: bool) -> None:
        if not final:
            return  # the upload stays "processing" while a retry is due
        params = job["params"]
        code = 422 if isinstance(error, PermanentError) else 500
        reason = getattr(error, "code", None)
        message = f"{reason}: {error}" if reason else f"processing failed: {error}"
        # A failed upload keeps no half set of tasks: the UI would show them as usable.
        self.pipeline.remove_video_tasks(params["project_id"], params["video_name"], upload_id=params["upload_id"])
        self.mongo.record_upload_error(params["upload_id"], code, message)

    def on_cancelled(self, job: dict) -> None:
        params = job["params"]
        self.pipeline.remove_video_tasks(params["project_id"], params["video_name"], upload_id=params["upload_id"])
        self.mongo.record_upload_error(params["upload_id"], CANCELLED_CODE, "processing was cancelled on request")
