"""The jobs page, an upload's page and the JSON API behind them (issue 14, items 4 and 8).

Every job of every kind (`ProcessingJob` docs) with its state, stage, progress, ETA, attempts and
last error; content jobs link to their upload's tasks, whose task videos play in the page. The page
refreshes itself from `GET /api/jobs`; an operator retries a failed job and cancels a queued or
running one. Every route needs the key (session.py).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, jsonify, render_template, request
from werkzeug.routing import PathConverter

from media_service.contract import ACTIVE_STATES, content_job_id
from media_service.logging_setup import job_context
from media_service.mongo import VideoBusy
from media_service.storage import LocalStorage
from media_service.web.content_request import parse_object_id
from media_service.web.operator import headers, session
from media_service.web.operator.try_it import proposed_labels
from media_service.web.operator.views import (
    RETRYABLE_STATES,
    frames_view,
    iso,
    job_view,
    job_views,
    json_error,
    tasks_view,
    upload_id_of,
    upload_view,
    whole_number,
)
from media_service.web.platform import services

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent.parent
bp = Blueprint("jobs_page", __name__, template_folder=WEB / "templates", static_folder=WEB / "static",
               static_url_path="/jobs/static")
bp.before_request(session.require_key)
bp.after_request(headers.page_headers)

POLL_MS = 1500
MAX_LIST = 500


class JobIdConverter(PathConverter):
    """A job id in a URL, slashes included (`privacy:<folder>/<file>`), but never ending in /retry or
    /cancel: those URLs are the actions', so GET on them is a 405 and OPTIONS lists only POST."""
    regex = r"[^/](?:(?!/(?:retry|cancel)$).)*"


bp.record_once(lambda state: state.app.url_map.converters.setdefault("job_id", JobIdConverter))


def _list_args() -> tuple[str | None, str | None, int]:
    kind = request.args.get("kind") or None
    state = request.args.get("state") or None
    raw = request.args.get("limit", "200")
    limit = min(whole_number(raw) or 200, MAX_LIST)
    return kind, state, limit


# -- the pages -------------------------------------------------------------------------------------
@bp.get("/jobs")
def page():
    """GET /jobs (key: session cookie or X-API-Key; without it 401 and the login form): the jobs
    page, HTML. Lists jobs of every kind, newest first (`?kind=`, `?state=`, `?limit=` up to 500),
    refreshes itself from GET /api/jobs every 1.5 s, and has the retry and cancel buttons; with
    `[App] try_it`, the try-it form."""
    kind, state, limit = _list_args()
    settings = services().settings
    jobs = job_views(services().mongo.jobs.list(kind, state, limit))
    return render_template("jobs/page.html", jobs=jobs, csrf=session.page_csrf(), poll_ms=POLL_MS,
                           try_it=settings.app.try_it, try_it_mib=settings.app.try_it_max_bytes / 2 ** 20,
                           extensions=settings.content.allowed_extensions, kind=kind or "", state=state or "",
                           limit=limit, labels=proposed_labels(settings),
                           local_storage=isinstance(services().storage, LocalStorage),
                           now=iso(datetime.now(timezone.utc)))


@bp.get("/jobs/uploads/<upload_id>")
def upload_page(upload_id: str):
    """GET /jobs/uploads/<upload_id> (key): one upload's state (with what auto-annotation left out
    and why) and its tasks, each task video in a `<video>` element with its boxes drawn over it and
    its frames listed (from GET /api/uploads/.../frames, by the page's script) (HTML); 404 for an
    unknown upload."""
    object_id = parse_object_id(upload_id)
    upload = services().mongo.get_upload(object_id) if object_id else None
    if upload is None:
        return render_template("jobs/upload.html", upload=None, upload_id=upload_id, job=None, tasks=[],
                               csrf=session.page_csrf()), 404
    job = services().mongo.jobs.get(content_job_id(object_id))
    return render_template("jobs/upload.html", upload=upload_view(upload), upload_id=upload_id,
                           job=job_view(job) if job else None, tasks=tasks_view(object_id), csrf=session.page_csrf(),
                           local_storage=isinstance(services().storage, LocalStorage))


# -- the JSON API ----------------------------------------------------------------------------------
@bp.get("/api/jobs")
def api_jobs():
    """GET /api/jobs (key): `{"jobs": [...], "count": n}`, newest first; `?kind=` (content,
    content_part (the parts of long uploads, listed only when asked for), annotation, privacy,
    dataset), `?state=` (queued, running, done, failed, cancelled), `?limit=`
    (default 200, at most 500). Each job: id, kind, key, name (the file) and project (its name),
    request_type, state, stage, progress (0-100), eta_seconds and eta (while running), attempts,
    max_attempts, last_error, warning (what auto-annotation left out, and why), cancel_requested,
    created_at, updated_at, started_at, finished_at, history, result, params (server paths shown
    relative to their folders), superseded_by (a record of an earlier run: `<job id>@run<n>`),
    can_cancel, can_retry, upload_id and tasks_url (content and annotation jobs), url."""
    kind, state, limit = _list_args()
    jobs = job_views(services().mongo.jobs.list(kind, state, limit))
    return jsonify({"jobs": jobs, "count": len(jobs)}), 200


@bp.get("/api/jobs/<job_id:job_id>")
def api_job(job_id: str):
    """GET /api/jobs/<job id> (key; ids like `content:<uploadId>`, `privacy:<file>`): the job as in
    the list, and for content and annotation jobs its `upload` (status, progress, task_count, error)
    and `tasks` (name, frames, size, key, video_url: this service's /jobs/media/... for local
    storage, a presigned URL for S3). 404 for an unknown id."""
    job = services().mongo.jobs.get(job_id)
    if job is None:
        return json_error(404, f"no job {services().redact.text(job_id)}")
    view = job_view(job)
    upload_id = upload_id_of(job)
    if upload_id is not None:
        view["upload"] = upload_view(services().mongo.get_upload(upload_id))
        view["tasks"] = tasks_view(upload_id)
    return jsonify(view), 200


@bp.get("/api/uploads/<upload_id>/tasks/<task_id>/frames")
def api_task_frames(upload_id: str, task_id: str):
    """GET /api/uploads/<upload_id>/tasks/<task_id>/frames (key): the task's frames in order, what
    the upload page draws and lists: `{task, width, height, frame_rate, frames: [{frame (1-based in
    the task video), source_frame (1-based in the source), time (s in the task video), boxes: [{label,
    score, x, y, w, h (task-video pixels), color, track_id, auto}]}]}`. 404 for an unknown upload or
    task, or a task of another upload."""
    upload, task = parse_object_id(upload_id), parse_object_id(task_id)
    found = services().mongo.upload_task(upload, task) if upload and task else None
    if found is None:
        return json_error(404, "no such task in this upload")
    return jsonify(frames_view(found, services().mongo.task_frames(task))), 200


@bp.post("/api/jobs/<path:job_id>/retry")
def api_retry(job_id: str):
    """POST /api/jobs/<job id>/retry (key; with the cookie also the CSRF token): run a failed (or
    cancelled) job again: queued and due now, attempts reset, the same params, its last error moved
    to its history; a content job's upload goes back to status 0 (processing) first. 202 with the
    job; 200 when it is already queued or running again; 404 unknown; 409 when it is not failed or
    cancelled, or another job holds the same video now."""
    svc = services()
    job = svc.mongo.jobs.get(job_id)
    if job is None:
        return json_error(404, f"no job {svc.redact.text(job_id)}")
    if job.superseded_by:
        return json_error(409, f"this is the record of an earlier run of {svc.redact.text(job.superseded_by)}; "
                               "retry that job instead", job=job_view(job))
    if job.state not in RETRYABLE_STATES:
        return json_error(409, f"only a failed or cancelled job can be retried; this one is {job.state}",
                          job=job_view(job))
    upload_id = upload_id_of(job)
    with job_context(f"job={job_id}"):
        before = svc.mongo.reopen_upload(upload_id) if upload_id else None
        try:
            retried = svc.mongo.jobs.retry(job_id, RETRYABLE_STATES)
        except VideoBusy as busy:
            if before is not None:
                svc.mongo.restore_upload(upload_id, before)
            return json_error(409, f"another job ({svc.redact.text(str(busy.holder))}) holds this video now; retry "
                                   "when it has ended")
        if retried is None:  # it changed meanwhile: another retry, or Node sent the upload again
            current = svc.mongo.jobs.get(job_id)
            if current and current.state in ACTIVE_STATES:
                return jsonify({"message": "already queued or running", "job": job_view(current)}), 200
            if before is not None:
                svc.mongo.restore_upload(upload_id, before)
            return json_error(409, "the job changed meanwhile; reload and try again")
        log.info("job %s queued again by an operator (it had %s)", job_id, job.state)
        svc.notify_workers()
        return jsonify({"message": "queued again", "job": job_view(retried)}), 202


@bp.post("/api/jobs/<path:job_id>/cancel")
def api_cancel(job_id: str):
    """POST /api/jobs/<job id>/cancel (key; with the cookie also the CSRF token): stop a queued or
    running job. A running one stops at its worker's next heartbeat, its partial outputs removed (a
    content job's upload gets status 2, error_code 499). 202 with the job; 404 unknown; 409 when it
    is not queued or running."""
    svc = services()
    job = svc.mongo.jobs.get(job_id)
    if job is None:
        return json_error(404, f"no job {svc.redact.text(job_id)}")
    requested = svc.mongo.jobs.request_cancel(job_id)
    if requested is None:
        return json_error(409, f"only a queued or running job can be cancelled; this one is {job.state}",
                          job=job_view(job))
    log.info("job %s: cancel requested by an operator", job_id)
    svc.notify_workers()
    return jsonify({"message": "cancel requested; the job stops within a heartbeat",
                    "job": job_view(requested)}), 202
