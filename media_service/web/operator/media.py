"""`GET /jobs/media/<key>`: task videos of the local storage for the jobs pages, with range
requests so a video seeks. With S3 storage the pages link presigned URLs instead (views.video_url)."""
from __future__ import annotations

from flask import Blueprint

from media_service.storage import LocalStorage
from media_service.web.operator import headers, session
from media_service.web.operator.views import json_error
from media_service.web.platform import services
from media_service.web.stored_objects import serve_local_object

bp = Blueprint("jobs_media", __name__)
bp.before_request(session.require_key)
bp.after_request(headers.page_headers)


@bp.get("/jobs/media/<path:key>")
def media(key: str):
    """GET /jobs/media/<object key> (key): an object of the local storage (a task video:
    `contents/<projectId>/<task>/<task>.mp4`), streamed with its type, ETag and Last-Modified, and
    HTTP range requests (206, so a browser can seek). The file is opened without following links and
    must be a regular file inside the storage folder. 404 for anything else, and when task videos are
    in S3 (the page links those with presigned URLs instead)."""
    storage = services().storage
    if not isinstance(storage, LocalStorage):
        return json_error(404, "task videos are in S3, not served here: the jobs page links them with presigned URLs")
    return serve_local_object(storage, key)
