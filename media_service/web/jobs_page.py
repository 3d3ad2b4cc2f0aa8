"""The operator's jobs page and its JSON API (issue 14, items 4 and 8).

Every job of every kind (`ProcessingJob` docs) with its state, stage, progress, ETA, attempts and
last error; content jobs link to their upload's tasks, whose task videos play in the page. The page
refreshes itself from `GET /api/jobs`; an operator retries a failed job and cancels a queued or
running one. With `[App] try_it` (the embedded default; off in production) a form lets a person
try the service without the Node platform: pick a video, and the service creates the project and
upload docs as Node would and queues the job through `POST /api/processContent`'s own code.

Authentication: the service's key ([App] API_key / APP_API_KEY), never anything weaker.
- Scripts send it as the `X-API-Key` header on any route here.
- A browser posts it once to the login form and gets an HttpOnly, SameSite=Strict cookie (Secure
  on HTTPS) holding a session token: an expiry, a random nonce and an HMAC-SHA256 of both under a
  key derived from the matching API key. The key itself is never stored in the browser; removing a
  key from APP_API_KEY ends its sessions, and a token ends after `[App] jobs_session_hours`.
- A POST authenticated by the cookie must also carry the page's CSRF token (derived from the
  session token) as the `X-CSRF-Token` header or a `csrf_token` form field.
Without the key: 401 (HTML routes answer with the login form, the others with JSON).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from bson import ObjectId
from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import PathConverter

import mongo_manager
from media_service.contract import (
    ACTIVE_STATES,
    ANNOTATION_KIND,
    CONTENT_KIND,
    FRAMES_PER_TASK_STANDARD,
    ContentType,
    RequestType,
    UploadStatus,
    content_job_id,
)
from media_service.logging_setup import job_context
from media_service.paths import ConfinedDir, PathRefused, resolve_inside
from media_service.storage import LocalStorage
from media_service.web import limits
from media_service.web.auth import count_wrong_key, key_matches
from media_service.web.content_request import parse_object_id
from media_service.web.platform import process_content_fields, services
from media_service.web.stored_objects import serve_local_object
from mongo_manager import VideoBusy

log = logging.getLogger(__name__)

bp = Blueprint("jobs_page", __name__, template_folder="templates", static_folder="static",
               static_url_path="/jobs/static")


class JobIdConverter(PathConverter):
    """A job id in a URL, slashes included (`privacy:<folder>/<file>`), but never ending in /retry or
    /cancel: those URLs are the actions', so GET on them is a 405 and OPTIONS lists only POST."""
    regex = r"[^/](?:(?!/(?:retry|cancel)$).)*"


bp.record_once(lambda state: state.app.url_map.converters.setdefault("job_id", JobIdConverter))

SESSION_COOKIE = "media_jobs_session"
CSRF_HEADER = "X-CSRF-Token"
RETRYABLE_STATES = ("failed", "cancelled")
UPLOAD_KINDS = (CONTENT_KIND, ANNOTATION_KIND)  # job params carry an upload_id
POLL_MS = 1500
MAX_LIST = 500
_OPEN = ("jobs_page.login", "jobs_page.login_form", "jobs_page.static")
_HTML = ("jobs_page.page", "jobs_page.upload_page", "jobs_page.logout")


# -- sessions ------------------------------------------------------------------------------------
def _whole(raw: str, digits: int = 6) -> int | None:
    """A whole number written in ASCII digits (at most `digits` of them), else None."""
    return int(raw) if re.fullmatch(rf"[0-9]{{1,{digits}}}", raw) else None


def _session_mac(key: str, payload: str) -> str:
    derived = hmac.new(key.encode(), b"media-service jobs page session v1", hashlib.sha256).digest()
    return hmac.new(derived, payload.encode(), hashlib.sha256).hexdigest()


def issue_session(key: str, hours: float, now: float | None = None) -> str:
    """`<expiry>.<nonce>.<hmac>`: nothing in it reveals the key."""
    payload = f"{int((now or time.time()) + hours * 3600)}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_session_mac(key, payload)}"


def session_valid(token: str, keys: tuple[str, ...], hours: float, now: float | None = None) -> bool:
    """Signed by one of the configured keys (compared in constant time, every key tried) and not
    expired, nor valid for longer than a session lasts now."""
    now = now or time.time()
    payload, _, mac = token.rpartition(".")
    expires, _, nonce = payload.partition(".")
    if len(token) > 200 or not (mac and nonce and _whole(expires, 12) is not None):
        return False
    if not now <= int(expires) <= now + hours * 3600 + 60:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(mac.encode(), _session_mac(key, payload).encode())
    return matched


def csrf_token(session: str) -> str:
    return hmac.new(session.encode(), b"media-service jobs page csrf", hashlib.sha256).hexdigest()


def _matching_key(given: str, keys: tuple[str, ...]) -> str | None:
    found = None
    for key in keys:  # no early exit
        if hmac.compare_digest(given.encode(), key.encode()) and found is None:
            found = key
    return found


def _authenticated() -> str | None:
    """"header" (X-API-Key), "cookie" (a valid session) or None."""
    settings = services().settings
    given = request.headers.get("X-API-Key")
    if given:
        if key_matches(given, settings.api_keys):
            return "header"
        count_wrong_key()  # 429 once this client has sent too many
        return None
    token = request.cookies.get(SESSION_COOKIE)
    if token and session_valid(token, settings.api_keys, settings.jobs_session_hours):
        return "cookie"
    return None


@bp.before_request
def require_key():
    if request.endpoint in _OPEN or request.method == "OPTIONS":  # OPTIONS: Flask's answer, the methods only
        return None
    settings = services().settings
    if request.endpoint == "jobs_page.try_it":
        if not settings.try_it:
            return _error(404, "the try-it form is off ([App] try_it)")
        request.max_content_length = settings.try_it_max_bytes
        if request.mimetype == "multipart/form-data":  # files are spooled to disk; other bodies stay small
            limits.allow(request.environ, settings.try_it_max_bytes)
    how = _authenticated()
    if how is None:
        if request.endpoint in _HTML:
            return _login_page(401, None)
        return _error(401, "this needs the service's key: log in at /jobs, or send it as the X-API-Key header")
    if how == "cookie" and request.method not in ("GET", "HEAD"):
        given = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
        expected = csrf_token(request.cookies[SESSION_COOKIE])
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _error(403, "missing or wrong CSRF token: reload the jobs page")
    g.jobs_auth = how
    return None


@bp.after_request
def page_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.endpoint not in ("jobs_page.static", "jobs_page.media"):
        response.headers["Cache-Control"] = "no-store"
    if response.mimetype == "text/html":
        response.headers["X-Frame-Options"] = "DENY"
        media = " ".join(filter(None, ("'self'", _storage_origin())))
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"media-src {media}; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return response


def _error(status: int, message: str, **extra):
    return jsonify({"message": message, "status": status, **extra}), status


def _login_page(status: int, error: str | None):
    return render_template("jobs/login.html", error=error), status


@bp.get("/jobs/login")
def login_form():
    """GET /jobs/login (no key): the login form (HTML)."""
    return _login_page(200, None)


@bp.post("/jobs/login")
def login():
    """POST /jobs/login (no key; form field `key`): with a configured key, 303 to /jobs and the
    session cookie (HttpOnly, SameSite=Strict, Secure on HTTPS, for `[App] jobs_session_hours`);
    otherwise 401 and the form again. The key is never logged."""
    settings = services().settings
    key = _matching_key(request.form.get("key", ""), settings.api_keys)
    if key is None:
        log.warning("jobs page: a login with a wrong key from %s", request.remote_addr)
        if request.form.get("key"):
            count_wrong_key()  # 429 once this client has sent too many
        return _login_page(401, "That is not the service's key.")
    response = redirect(url_for("jobs_page.page"), 303)
    response.set_cookie(SESSION_COOKIE, issue_session(key, settings.jobs_session_hours),
                        max_age=int(settings.jobs_session_hours * 3600), path="/", secure=request.is_secure,
                        httponly=True, samesite="Strict")
    return response


@bp.post("/jobs/logout")
def logout():
    """POST /jobs/logout (key; with the cookie also the CSRF token): 303 to /jobs, cookie removed."""
    response = redirect(url_for("jobs_page.page"), 303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=request.is_secure, httponly=True, samesite="Strict")
    return response


# -- what a job looks like to a person -------------------------------------------------------------
def _plain(value, redact):
    """JSON-ready: ids as hex, dates as ISO 8601 (UTC), strings without secrets or server paths."""
    if isinstance(value, str):
        return redact.text(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, redact) for v in value]
    return value


def _iso(value: datetime | None) -> str | None:
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


def _upload_id(job: dict) -> ObjectId | None:
    if job.get("kind") not in UPLOAD_KINDS:
        return None
    value = (job.get("params") or {}).get("upload_id")
    return value if isinstance(value, ObjectId) else parse_object_id(str(value)) if value else None


def job_view(job: dict) -> dict:
    redact = services().redact
    upload_id = _upload_id(job)
    state = job.get("state")
    return {
        "id": redact.text(str(job["_id"])), "kind": job.get("kind"), "key": _plain(job.get("key"), redact),
        "state": state, "stage": job.get("stage"), "progress": round(float(job.get("progress") or 0), 1),
        "eta_seconds": job.get("eta_seconds") if state == "running" else None,
        "eta": eta_text(job.get("eta_seconds")) if state == "running" else "",
        "attempts": job.get("attempts", 0), "max_attempts": job.get("max_attempts"),
        "last_error": _plain(job.get("last_error"), redact), "cancel_requested": bool(job.get("cancel_requested")),
        "created_at": _iso(job.get("created_at")), "updated_at": _iso(job.get("updated_at")),
        "started_at": _iso(job.get("started_at")), "finished_at": _iso(job.get("finished_at")),
        "history": _plain(job.get("history") or [], redact), "result": _plain(job.get("result"), redact),
        "params": _plain(job.get("params") or {}, redact),
        "can_cancel": state in ACTIVE_STATES and not job.get("cancel_requested"),
        "can_retry": state in RETRYABLE_STATES,
        "upload_id": str(upload_id) if upload_id else None,
        "tasks_url": url_for("jobs_page.upload_page", upload_id=str(upload_id)) if upload_id else None,
        "url": url_for("jobs_page.api_job", job_id=job["_id"]),
    }


def _storage_origin() -> str:
    """Where task videos play from besides this service: the S3 endpoint's origin (presigned URLs)."""
    storage = services().storage
    if storage is None or isinstance(storage, LocalStorage):
        return ""
    try:
        parts = urlsplit(storage.url("contents/origin-probe.mp4", 60))
        return f"{parts.scheme}://{parts.netloc}"
    except Exception:  # no credentials: nothing will play from there anyway
        return ""


def video_url(key: str | None) -> str | None:
    """A URL the browser can play a task video from: this service (local storage) or a presigned
    S3 URL for an hour; None when neither is possible."""
    storage = services().storage
    if not key or storage is None:
        return None
    key = storage.own_key(key)  # documents hold the full key in the bucket
    if isinstance(storage, LocalStorage) and storage.signer is None:
        return url_for("jobs_page.media", key=key)
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
            "source": _plain(upload.get("sourceFilePath"), redact)}


def _list_args() -> tuple[str | None, str | None, int]:
    kind = request.args.get("kind") or None
    state = request.args.get("state") or None
    raw = request.args.get("limit", "200")
    limit = min(_whole(raw) or 200, MAX_LIST)
    return kind, state, limit


def _csrf() -> str:
    token = request.cookies.get(SESSION_COOKIE)
    return csrf_token(token) if token and g.get("jobs_auth") == "cookie" else ""


# -- the pages -------------------------------------------------------------------------------------
@bp.get("/jobs")
def page():
    """GET /jobs (key: session cookie or X-API-Key; without it 401 and the login form): the jobs
    page, HTML. Lists jobs of every kind, newest first (`?kind=`, `?state=`, `?limit=` up to 500),
    refreshes itself from GET /api/jobs every 1.5 s, and has the retry and cancel buttons; with
    `[App] try_it`, the try-it form."""
    kind, state, limit = _list_args()
    settings = services().settings
    jobs = [job_view(job) for job in services().mongo.list_jobs(kind, state, limit)]
    return render_template("jobs/page.html", jobs=jobs, csrf=_csrf(), poll_ms=POLL_MS, try_it=settings.try_it,
                           try_it_mib=settings.try_it_max_bytes / 2 ** 20, extensions=settings.allowed_extensions,
                           kind=kind or "", state=state or "", limit=limit,
                           local_storage=isinstance(services().storage, LocalStorage),
                           now=_iso(datetime.now(timezone.utc)))


@bp.get("/jobs/uploads/<upload_id>")
def upload_page(upload_id: str):
    """GET /jobs/uploads/<upload_id> (key): one upload's state and its tasks, each task video in a
    `<video>` element (HTML); 404 for an unknown upload."""
    object_id = parse_object_id(upload_id)
    upload = services().mongo.get_upload(object_id) if object_id else None
    if upload is None:
        return render_template("jobs/upload.html", upload=None, upload_id=upload_id, job=None, tasks=[],
                               csrf=_csrf()), 404
    job = services().mongo.get_job(content_job_id(object_id))
    return render_template("jobs/upload.html", upload=upload_view(upload), upload_id=upload_id,
                           job=job_view(job) if job else None, tasks=tasks_view(object_id), csrf=_csrf(),
                           local_storage=isinstance(services().storage, LocalStorage))


@bp.get("/jobs/media/<path:key>")
def media(key: str):
    """GET /jobs/media/<object key> (key): an object of the local storage (a task video:
    `contents/<projectId>/<task>/<task>.mp4`), streamed with its type, ETag and Last-Modified, and
    HTTP range requests (206, so a browser can seek). The file is opened without following links and
    must be a regular file inside the storage folder. 404 for anything else, and when task videos are
    in S3 (the page links those with presigned URLs instead)."""
    storage = services().storage
    if not isinstance(storage, LocalStorage):
        return _error(404, "task videos are in S3, not served here: the jobs page links them with presigned URLs")
    return serve_local_object(storage, key)


# -- the JSON API ----------------------------------------------------------------------------------
@bp.get("/api/jobs")
def api_jobs():
    """GET /api/jobs (key): `{"jobs": [...], "count": n}`, newest first; `?kind=` (content,
    annotation, privacy, dataset), `?state=` (queued, running, done, failed, cancelled), `?limit=`
    (default 200, at most 500). Each job: id, kind, key, state, stage, progress (0-100), eta_seconds
    and eta (while running), attempts, max_attempts, last_error, cancel_requested, created_at,
    updated_at, started_at, finished_at, history, result, params (server paths shown relative to
    their folders), can_cancel, can_retry, upload_id and tasks_url (content and annotation jobs), url."""
    kind, state, limit = _list_args()
    jobs = [job_view(job) for job in services().mongo.list_jobs(kind, state, limit)]
    return jsonify({"jobs": jobs, "count": len(jobs)}), 200


@bp.get("/api/jobs/<job_id:job_id>")
def api_job(job_id: str):
    """GET /api/jobs/<job id> (key; ids like `content:<uploadId>`, `privacy:<file>`): the job as in
    the list, and for content and annotation jobs its `upload` (status, progress, task_count, error)
    and `tasks` (name, frames, size, key, video_url: this service's /jobs/media/... for local
    storage, a presigned URL for S3). 404 for an unknown id."""
    job = services().mongo.get_job(job_id)
    if job is None:
        return _error(404, f"no job {services().redact.text(job_id)}")
    view = job_view(job)
    upload_id = _upload_id(job)
    if upload_id is not None:
        view["upload"] = upload_view(services().mongo.get_upload(upload_id))
        view["tasks"] = tasks_view(upload_id)
    return jsonify(view), 200


@bp.post("/api/jobs/<path:job_id>/retry")
def api_retry(job_id: str):
    """POST /api/jobs/<job id>/retry (key; with the cookie also the CSRF token): run a failed (or
    cancelled) job again: queued and due now, attempts reset, the same params, its last error moved
    to its history; a content job's upload goes back to status 0 (processing) first. 202 with the
    job; 200 when it is already queued or running again; 404 unknown; 409 when it is not failed or
    cancelled, or another job holds the same video now."""
    svc = services()
    job = svc.mongo.get_job(job_id)
    if job is None:
        return _error(404, f"no job {svc.redact.text(job_id)}")
    if job["state"] not in RETRYABLE_STATES:
        return _error(409, f"only a failed or cancelled job can be retried; this one is {job['state']}",
                      job=job_view(job))
    upload_id = _upload_id(job)
    with job_context(f"job={job_id}"):
        before = svc.mongo.reopen_upload(upload_id) if upload_id else None
        try:
            retried = svc.mongo.retry_job(job_id, RETRYABLE_STATES)
        except VideoBusy as busy:
            if before is not None:
                svc.mongo.restore_upload(upload_id, before)
            return _error(409, f"another job ({svc.redact.text(str(busy.holder))}) holds this video now; retry when "
                               "it has ended")
        if retried is None:  # it changed meanwhile: another retry, or Node sent the upload again
            current = svc.mongo.get_job(job_id)
            if current and current["state"] in ACTIVE_STATES:
                return jsonify({"message": "already queued or running", "job": job_view(current)}), 200
            if before is not None:
                svc.mongo.restore_upload(upload_id, before)
            return _error(409, "the job changed meanwhile; reload and try again")
        log.info("job %s queued again by an operator (it had %s)", job_id, job["state"])
        svc.notify_workers()
        return jsonify({"message": "queued again", "job": job_view(retried)}), 202


@bp.post("/api/jobs/<path:job_id>/cancel")
def api_cancel(job_id: str):
    """POST /api/jobs/<job id>/cancel (key; with the cookie also the CSRF token): stop a queued or
    running job. A running one stops at its worker's next heartbeat, its partial outputs removed (a
    content job's upload gets status 2, error_code 499). 202 with the job; 404 unknown; 409 when it
    is not queued or running."""
    svc = services()
    job = svc.mongo.get_job(job_id)
    if job is None:
        return _error(404, f"no job {svc.redact.text(job_id)}")
    requested = svc.mongo.request_cancel(job_id)
    if requested is None:
        return _error(409, f"only a queued or running job can be cancelled; this one is {job['state']}",
                      job=job_view(job))
    log.info("job %s: cancel requested by an operator", job_id)
    svc.notify_workers()
    return jsonify({"message": "cancel requested; the job stops within a heartbeat",
                    "job": job_view(requested)}), 202


# -- try it without the Node platform --------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _safe_name(original: str, ext: str) -> str:
    """A name of our making: the original's letters, digits, `-` and `_` (at most 60), a random
    suffix, the checked extension."""
    stem = _UNSAFE.sub("-", Path(original.replace("\\", "/")).stem).strip("-_")[:60] or "video"
    return f"{stem}-{secrets.token_hex(4)}.{ext}"


def _node_content_path(path: Path) -> str:
    """The path as Node sends it: relative to `[Folders] content_path_base` (./contents/uploads/...),
    or absolute when the content folder lies elsewhere."""
    base = services().settings.path("content_path_base")
    try:
        return "./" + path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _save_upload(storage_file, root: Path, folder: Path, ext: str, limit: int) -> Path:
    name = _safe_name(storage_file.filename or "", ext)
    written = 0
    with ConfinedDir(root, folder) as target:
        fd = target.create(name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := storage_file.stream.read(1 << 20):
                    written += len(chunk)
                    if written > limit:
                        raise RequestEntityTooLarge()
                    out.write(chunk)
        except BaseException:
            target.unlink(name)
            raise
    return folder / name


def _restart_database_deadline() -> None:
    """The request's database deadline started before the video was read; the writes after it get
    their own (`[MongoDB] timeout_seconds`)."""
    if "database_deadline" in g:
        g.database_deadline.__exit__(None, None, None)
        g.database_deadline = mongo_manager.deadline(services().settings.mongo_timeout_seconds)
        g.database_deadline.__enter__()


def _mark_try_it(upload_id: ObjectId, project_id: ObjectId, folder: str | None) -> None:
    """Record the try, so `[Jobs] try_it_retention_hours` removes what it makes (content/retention.py)."""
    _restart_database_deadline()  # reading the video's body may have taken the request's
    services().mongo.record_try_it(upload_id, project_id, folder)


@bp.post("/jobs/try")
def try_it():
    """POST /jobs/try (key; with the cookie also the CSRF token; only with `[App] try_it`, else 404):
    multipart form with `frame_rate` and either `video` (a file, at most `[App] try_it_max_bytes`,
    else 413; saved as `<content_base>/uploads/<new projectId>/<safe name>`) or `content_path` (a
    file already inside `[Folders] content_base`, relative to it). Creates the AnnotationProject and
    AnnotationContentUpload docs as Node does (CONTRACT §2), then runs POST /api/processContent's own
    validation and queueing with the fields Node would send. Answers processContent's status and body
    (202 once queued; 4xx with its message, recorded on the upload doc) plus job_id, project_id,
    upload_id, content_path, job_url and tasks_url. 400 for a missing or bad frame rate or source,
    415 for an extension not in `[Content] allowed_extensions`. Everything a try makes is removed
    after `[Jobs] try_it_retention_hours` (content/retention.py; a file named by content_path stays)."""
    svc = services()
    settings = svc.settings
    frame_rate = (request.form.get("frame_rate") or "").strip()
    if not 0 < (_whole(frame_rate) or 0) <= 1000:
        return _error(400, "frame_rate must be a whole number from 1 to 1000")
    video = request.files.get("video")
    typed_path = (request.form.get("content_path") or "").strip()
    if (video is None or not video.filename) == (not typed_path):
        return _error(400, "send either a video file or a content_path, not both")
    root = settings.content_root().root
    project_id, upload_id = ObjectId(), ObjectId()
    if video is not None and video.filename:
        ext = Path(video.filename).suffix.lower().lstrip(".")
        if ext not in settings.allowed_extensions:
            return _error(415, f"file extension '.{ext}' is not allowed; allowed: "
                               f"{', '.join(settings.allowed_extensions)}")
        folder = root / "uploads" / str(project_id)
        _mark_try_it(upload_id, project_id, folder.relative_to(root).as_posix())  # before anything is saved
        try:
            source = _save_upload(video, root, folder, ext, settings.try_it_max_bytes)
        except PathRefused as exc:
            return _error(400, f"the upload cannot be saved in the content folder: {svc.redact.text(str(exc))}")
        original = video.filename
    else:
        try:
            source = resolve_inside(root, typed_path)
        except PathRefused as exc:
            return _error(400, f"content_path cannot be used: {exc}")
        if source is None:
            return _error(400, "content_path must name a file inside the content folder ([Folders] content_base)")
        original = source.name
        _mark_try_it(upload_id, project_id, None)  # it saved no file: the retention deletes none
    _restart_database_deadline()
    content_path = _node_content_path(source)
    now = mongo_manager.utcnow()
    svc.mongo.create_project_and_upload(
        {"_id": project_id, "name": f"Try it: {Path(original).name}"[:200], "contentUploads": [], "labels": [],
         "createdAt": now, "updatedAt": now},
        {"_id": upload_id, "projectId": project_id, "createdAt": now, "updatedAt": now,
         "sourceFilePath": content_path, "progress": 0, "status": UploadStatus.PROCESSING,
         "frame_rate": int(frame_rate), "frames_per_task": FRAMES_PER_TASK_STANDARD,
         "content_type": ContentType.VIDEO, "force_write": 0, "request_annotation_version": 0,
         "request_type": RequestType.TASKS_ONLY})
    log.info("try-it: upload %s of project %s created for %s", upload_id, project_id, svc.redact.text(content_path))
    answer, status = process_content_fields({
        "upload_id": str(upload_id), "auth_key": settings.api_keys[0], "project_id": str(project_id),
        "frame_rate": frame_rate, "content_path": content_path, "force_write": "0", "auto_anno_version": "0",
        "request_type": str(RequestType.TASKS_ONLY), "content_type": str(ContentType.VIDEO)})
    job_id = content_job_id(upload_id)
    return jsonify({**(answer.get_json(silent=True) or {}), "job_id": job_id, "project_id": str(project_id),
                    "upload_id": str(upload_id), "content_path": svc.redact.text(content_path),
                    "job_url": url_for("jobs_page.api_job", job_id=job_id),
                    "tasks_url": url_for("jobs_page.upload_page", upload_id=str(upload_id))}), status
