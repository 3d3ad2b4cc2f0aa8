"""What a job, an upload and its tasks look like to a person (the pages) and a script (the JSON
API): ids as hex, dates as ISO 8601 in UTC, strings without secrets or server paths, task videos as
URLs a browser can play."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from bson import ObjectId
from flask import jsonify, url_for

from media_service.contract import ACTIVE_STATES, ANNOTATION_KIND, CONTENT_KIND
from media_service.storage import LocalStorage
from media_service.web.content_request import parse_object_id
from media_service.web.platform import services

log = logging.getLogger(__name__)

RETRYABLE_STATES = ("failed", "cancelled")
UPLOAD_KINDS = (CONTENT_KIND, ANNOTATION_KIND)  # job params carry an upload_id


def json_error(status: int, message: str, **extra):
    return jsonify({"message": message, "status": status, **extra}), status


def whole_number(raw: str, digits: int = 6) -> int | None:
    """A whole number written in ASCII digits (at most `digits` of them), else None."""
    return int(raw) if re.fullmatch(rf"[0-9]{{1,{digits}}}", raw) else None


def _plain(value, redact):
    """JSON-ready: ids as hex, dates as ISO 8601 (UTC), strings without secrets or server paths."""
    if isinstance(value, str):
        return redact.text(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, redact) for v in value]
    return value


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def eta_text(seconds) -> str:
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m"


def upload_id_of(job: dict) -> ObjectId | None:
    """The upload a content or annotation job works on (None for other kinds)."""
    if job.get("kind") not in UPLOAD_KINDS:
        return None
    value = (job.get("params") or {}).get("upload_id")
    return value if isinstance(value, ObjectId) else parse_object_id(str(value)) if value else None


def job_view(job: dict) -> dict:
    redact = services().redact
    upload_id = upload_id_of(job)
    state = job.get("state")
    return {
        "id": redact.text(str(job["_id"])), "kind": job.get("kind"), "key": _plain(job.get("key"), redact),
        "state": state, "stage": job.get("stage"), "progress": round(float(job.get("progress") or 0), 1),
        "eta_seconds": job.get("eta_seconds") if state == "running" else None,
        "eta": eta_text(job.get("eta_seconds")) if state == "running" else "",
        "attempts": job.get("attempts", 0), "max_attempts": job.get("max_attempts"),
        "last_error": _plain(job.get("last_error"), redact), "cancel_requested": bool(job.get("cancel_requested")),
        "created_at": iso(job.get("created_at")), "updated_at": iso(job.get("updated_at")),
        "started_at": iso(job.get("started_at")), "finished_at": iso(job.get("finished_at")),
        "history": _plain(job.get("history") or [], redact), "result": _plain(job.get("result"), redact),
        "params": _plain(job.get("params") or {}, redact),
        "can_cancel": state in ACTIVE_STATES and not job.get("cancel_requested"),
        "can_retry": state in RETRYABLE_STATES,
        "upload_id": str(upload_id) if upload_id else None,
        "tasks_url": url_for("jobs_page.upload_page", upload_id=str(upload_id)) if upload_id else None,
        "url": url_for("jobs_page.api_job", job_id=job["_id"]),
    }


def video_url(key: str | None) -> str | None:
    """A URL the browser can play a task video from: this service (local storage, media.py) or a
    presigned S3 URL for an hour; None when neither is possible."""
    storage = services().storage
    if not key or storage is None:
        return None
    key = storage.own_key(key)  # documents hold the full key in the bucket
    if isinstance(storage, LocalStorage) and storage.signer is None:
        return url_for("jobs_media.media", key=key)
    try:
        return storage.url(key, 3600)
    except Exception as exc:
        log.warning("no URL for %s: %s", key, services().redact.text(str(exc)))
        return None


def tasks_view(upload_id: ObjectId) -> list[dict]:
    views = []
    for task in services().mongo.upload_tasks(upload_id):
        views.append({
            "id": str(task["_id"]), "name": task.get("taskName"), "frame_start": task.get("frameStart"),
            "frame_end": task.get("frameEnd"), "frame_count": task.get("frameCount"),
            "frame_rate": task.get("frameRate"), "width": task.get("videoResolutionWidth"),
            "height": task.get("videoResolutionHeight"), "duration": task.get("videoDuration"),
            "key": task.get("S3_url"), "video_url": video_url(task.get("S3_url")),
        })
    return views


def upload_view(upload: dict | None) -> dict | None:
    if upload is None:
        return None
    redact = services().redact
    return {"id": str(upload["_id"]), "project_id": _plain(upload.get("projectId"), redact),
            "status": upload.get("status"), "progress": upload.get("progress"), "task_count": upload.get("taskCount"),
            "error": _plain(upload.get("errorMessage") or {}, redact),
            "source": _plain(upload.get("sourceFilePath"), redact), "sampling": _plain(upload.get("sampling"), redact)}
