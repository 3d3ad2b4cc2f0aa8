"""What a job, an upload and its tasks look like to a person (the pages) and a script (the JSON
API): ids as hex, dates as ISO 8601 in UTC, strings without secrets or server paths, task videos as
URLs a browser can play from the page whatever host name it used, a task's frames with their boxes."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import PurePosixPath

from bson import ObjectId
from flask import jsonify, url_for

from media_service.contract import (
    ACTIVE_STATES,
    ANNOTATION_KIND,
    AUTO_MARK,
    CONTENT_KIND,
    CONTENT_PART_KIND,
    PRIVACY_KIND,
    RequestType,
)
from media_service.mongo import Job
from media_service.storage import LocalStorage
from media_service.web.content_request import parse_object_id
from media_service.web.left_out import left_out_warning
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


def upload_params(job: Job) -> dict:
    """The request a content, annotation or content_part job works on (empty for other kinds)."""
    if job.kind == CONTENT_PART_KIND:
        return job.params.get("content") or {}
    return job.params if job.kind in UPLOAD_KINDS else {}


def upload_id_of(job: Job) -> ObjectId | None:
    """The upload a content or annotation job (or a part of one) works on (None for other kinds)."""
    value = upload_params(job).get("upload_id")
    return value if isinstance(value, ObjectId) else parse_object_id(str(value)) if value else None


def job_views(jobs: list[Job]) -> list[dict]:
    """Jobs as the page and the API show them, their projects' names read in one query."""
    projects = services().mongo.project_names(upload_params(job).get("project_id") for job in jobs)
    return [job_view(job, projects) for job in jobs]


def _file_name(job: Job) -> str | None:
    """The file a job works on, as a person named it (never the server's path)."""
    params = upload_params(job)
    if params.get("content_path"):
        return PurePosixPath(str(params["content_path"]).replace("\\", "/")).name or None
    if job.kind == PRIVACY_KIND and job.key:
        return str(job.key)
    return None


def job_view(job: Job, projects: dict[str, str] | None = None) -> dict:
    redact = services().redact
    upload_id = upload_id_of(job)
    project_id = upload_params(job).get("project_id")
    if projects is None and project_id:
        projects = services().mongo.project_names([project_id])
    request_type = upload_params(job).get("request_type") if upload_id else None
    shows_eta = job.state == "running" or job.waiting  # a long upload's job waiting for its parts
    return {
        "id": redact.text(str(job.id)), "kind": job.kind, "key": _plain(job.key, redact),
        "name": _plain(_file_name(job), redact),
        "project": _plain((projects or {}).get(str(project_id), str(project_id)) if project_id else None, redact),
        "request_type": request_type, "request": RequestType.NAMES.get(request_type),
        "warning": left_out_warning((job.result or {}).get("annotation")),
        "superseded_by": _plain(job.superseded_by, redact),
        "state": job.state, "stage": job.stage, "progress": round(job.progress, 1),
        "eta_seconds": job.eta_seconds if shows_eta else None,
        "eta": eta_text(job.eta_seconds) if shows_eta else "",
        "attempts": job.attempts, "max_attempts": job.max_attempts,
        "last_error": _plain(job.last_error, redact), "cancel_requested": job.cancel_requested,
        "created_at": iso(job.created_at), "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
        "history": _plain(job.history, redact), "result": _plain(job.result, redact),
        "params": _plain(job.params, redact),
        "can_cancel": job.state in ACTIVE_STATES and not job.cancel_requested,
        "can_retry": job.state in RETRYABLE_STATES and not job.superseded_by and not job.parent,
        "upload_id": str(upload_id) if upload_id else None,
        "tasks_url": url_for("jobs_page.upload_page", upload_id=str(upload_id)) if upload_id else None,
        "url": url_for("jobs_page.api_job", job_id=job.id),
    }


def video_url(key: str | None) -> str | None:
    """A URL the browser can play a task video from: with local storage this service's own path
    (`/jobs/media/<key>`, media.py: same origin as the page, whatever host name the browser used;
    `[App] public_url` is for what Node and other machines open), else a presigned S3 URL for an
    hour; None when neither is possible."""
    storage = services().storage
    if not key or storage is None:
        return None
    key = storage.own_key(key)  # documents hold the full key in the bucket
    if isinstance(storage, LocalStorage):
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
            "frames_url": url_for("jobs_page.api_task_frames", upload_id=str(upload_id), task_id=str(task["_id"])),
        })
    return views


def upload_view(upload: dict | None) -> dict | None:
    if upload is None:
        return None
    redact = services().redact
    annotated = "annotationModel" in upload  # a run with auto-annotation left its counts
    project_id = upload.get("projectId")
    return {"id": str(upload["_id"]), "project_id": _plain(project_id, redact),
            "project": _plain(services().mongo.project_names([project_id]).get(str(project_id)), redact),
            "status": upload.get("status"), "progress": upload.get("progress"), "task_count": upload.get("taskCount"),
            "error": _plain(upload.get("errorMessage") or {}, redact),
            "source": _plain(upload.get("sourceFilePath"), redact), "sampling": _plain(upload.get("sampling"), redact),
            "boxes": upload.get("annotationBoxes") if annotated else None,
            "warning": left_out_warning({"boxes": upload.get("annotationBoxes"),
                                         "labels_left_out": upload.get("labelsLeftOut")}) if annotated else None}


def _number(value) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _score(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def box_view(box: dict) -> dict:
    """A box as the upload page draws it: label, score (auto boxes), geometry in task-video pixels,
    colour, track (auto boxes of one object share a trackId), and whether auto-annotation wrote it."""
    bounds = box.get("boundaries") if isinstance(box.get("boundaries"), dict) else {}
    track = box.get("trackId")
    color = bounds.get("color")
    return {"label": str(bounds.get("label") or ""), "score": _score(bounds.get("autoLable_confidance")),
            **{name: _number(bounds.get(name)) or 0 for name in ("x", "y", "w", "h")},
            "color": color if isinstance(color, str) and re.fullmatch(r"#[0-9A-Fa-f]{3,8}", color) else None,
            "track_id": track if isinstance(track, int) and not isinstance(track, bool) else None,
            "auto": AUTO_MARK in box}


def frames_view(task: dict, frames: list[dict]) -> dict:
    """A task's frames in order: position in the task video (frameId), the source frame it came from
    (the task's `original_frames`), its time in the task video, and its boxes."""
    numbers = task.get("original_frames") or []
    rate = _number(task.get("frameRate"))
    views = []
    for frame in frames:
        position = frame.get("frameId")
        known = isinstance(position, int) and 0 < position <= len(numbers)
        views.append({"frame": position, "source_frame": numbers[position - 1] if known else None,
                      "time": round((position - 1) / rate, 4) if rate and isinstance(position, int) else None,
                      "boxes": [box_view(box) for box in frame.get("boxes") or [] if isinstance(box, dict)]})
    return {"task": task.get("taskName"), "width": task.get("videoResolutionWidth"),
            "height": task.get("videoResolutionHeight"), "frame_rate": rate, "frames": views}
