"""Try the service without the Node platform (`[App] try_it`: the embedded default, off in
production; `operator.register` adds this blueprint only when it is on, so otherwise `/jobs/try` is a 404).

`POST /jobs/try`: pick a video, and the service saves it, creates the project and upload docs as
Node would (platform_docs.project_doc, platform_docs.video_upload_doc) and queues the job through
`POST /api/processContent`'s own code. Each try is recorded first, so `[Jobs] try_it_retention_hours`
removes what it made (content/retention.py). The key and CSRF rules are session.py's.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bson import ObjectId
from flask import Blueprint, jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from media_service.contract import ContentType, RequestType, content_job_id
from media_service.errors import PathRefused
from media_service.mongo import utcnow
from media_service.paths import ConfinedDir, resolve_inside
from media_service.platform_docs import project_doc, video_upload_doc
from media_service.web import deadlines, limits
from media_service.web.operator import headers, session
from media_service.web.operator.views import json_error, whole_number
from media_service.web.platform import process_content_fields, services

log = logging.getLogger(__name__)

bp = Blueprint("try_it", __name__)


@bp.before_request
def allow_a_video():
    """Before the key is checked (which may read the form): a video up to `[App] try_it_max_bytes`,
    larger than other requests may be."""
    settings = services().settings
    request.max_content_length = settings.app.try_it_max_bytes
    if request.mimetype == "multipart/form-data":  # files are spooled to disk; other bodies stay small
        limits.allow(request.environ, settings.app.try_it_max_bytes)


bp.before_request(session.require_key)
bp.after_request(headers.page_headers)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _safe_name(original: str, ext: str) -> str:
    """A name of our making: the original's letters, digits, `-` and `_` (at most 60), a random
    suffix, the checked extension."""
    stem = _UNSAFE.sub("-", Path(original.replace("\\", "/")).stem).strip("-_")[:60] or "video"
    return f"{stem}-{secrets.token_hex(4)}.{ext}"


def _node_content_path(path: Path) -> str:
    """The path as Node sends it: relative to `[Folders] content_path_base` (./contents/uploads/...),
    or absolute when the content folder lies elsewhere."""
    base = services().settings.folders.path("content_path_base")
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
    deadlines.restart_request_deadline(services().settings.mongodb.timeout_seconds)


def _mark_try_it(upload_id: ObjectId, project_id: ObjectId, folder: str | None) -> None:
    """Record the try, so `[Jobs] try_it_retention_hours` removes what it makes (content/retention.py)."""
    _restart_database_deadline()  # reading the video's body may have taken the request's
    services().mongo.record_try_it(upload_id, project_id, folder)


# The labels the try's project proposes for the default detector (`[Inference] type = local`): the
# classes it finds most in the footage people try first (streets, rooms, people). Other back ends
# name their own classes: the field starts empty.
DEFAULT_LABELS = ("person", "face", "car", "bicycle", "motorcycle", "bus", "truck", "dog", "chair", "bottle")
MAX_LABELS, MAX_LABEL_CHARS = 50, 64


def proposed_labels(settings) -> str:
    """What the form's labels field starts with."""
    return ", ".join(DEFAULT_LABELS) if settings.inference.type == "local" else ""


@dataclass(frozen=True)
class TryForm:
    frame_rate: str
    sampling_mode: str          # as processContent's field ("" for the configured mode)
    request_type: int           # 0 tasks only, 1 tasks plus auto-annotation (version 1)
    labels: tuple[str, ...]     # the project's labels
    video: object | None        # the file sent, or
    typed_path: str             # a path inside the content folder, relative to it


def _labels(text: str) -> tuple[str, ...]:
    """Comma-separated labels, trimmed, each once (the first spelling of a label kept, case aside)."""
    seen, labels = set(), []
    for part in text.split(","):
        label = part.strip()
        if label and label.lower() not in seen:
            seen.add(label.lower())
            labels.append(label)
    return tuple(labels)


class Placed(NamedTuple):
    source: Path               # the video, inside the content folder
    original: str              # its name as the person knew it
    folder: Path | None        # the folder the form saved it in (None: a typed path, nothing saved)


def _read_form() -> TryForm | tuple:
    """The form's fields, checked; else the 400 answer."""
    frame_rate = (request.form.get("frame_rate") or "").strip()
    if not 0 < (whole_number(frame_rate) or 0) <= 1000:
        return json_error(400, "frame_rate must be a whole number from 1 to 1000")
    request_type = (request.form.get("request_type") or "0").strip()
    if request_type not in ("0", "1"):
        return json_error(400, "request_type must be 0 (tasks only) or 1 (tasks plus auto-annotation)")
    labels = _labels(request.form.get("labels") or "")
    if len(labels) > MAX_LABELS or any(len(label) > MAX_LABEL_CHARS or not label.isprintable() for label in labels):
        return json_error(400, f"labels: at most {MAX_LABELS}, comma-separated, each at most {MAX_LABEL_CHARS} "
                               "printable characters")
    video = request.files.get("video")
    video = video if video is not None and video.filename else None
    typed_path = (request.form.get("content_path") or "").strip()
    if video is None and not typed_path:
        return json_error(400, "choose a video file, or type the path of a file already in the content folder "
                               "(relative to it)")
    if video is not None and typed_path:
        return json_error(400, "send either a video file or a content_path, not both")
    sampling_mode = (request.form.get("sampling_mode") or "").strip()  # processContent checks it
    return TryForm(frame_rate, sampling_mode, int(request_type), labels, video, typed_path)


def _place_source(form: TryForm, root: Path, project_id: ObjectId, upload_id: ObjectId) -> Placed | tuple:
    """The try recorded, then its video saved (or the typed path resolved), or the error answer."""
    settings = services().settings
    if form.video is None:
        try:
            source = resolve_inside(root, form.typed_path)
        except PathRefused as exc:
            return json_error(400, f"content_path cannot be used: {exc}")
        if source is None:
            return json_error(400, "content_path must name a file inside the content folder ([Folders] content_base)")
        _mark_try_it(upload_id, project_id, None)  # it saved no file: the retention deletes none
        return Placed(source, source.name, None)
    ext = Path(form.video.filename).suffix.lower().lstrip(".")
    if ext not in settings.content.allowed_extensions:
        return json_error(415, f"file extension '.{ext}' is not allowed; allowed: "
                               f"{', '.join(settings.content.allowed_extensions)}")
    folder = root / "uploads" / str(project_id)
    _mark_try_it(upload_id, project_id, folder.relative_to(root).as_posix())  # before anything is saved
    try:
        source = _save_upload(form.video, root, folder, ext, settings.app.try_it_max_bytes)
    except PathRefused as exc:
        return json_error(400, f"the upload cannot be saved in the content folder: {services().redact.text(str(exc))}")
    return Placed(source, form.video.filename, folder)


def _forget_refused(root: Path, upload_id: ObjectId, project_id: ObjectId, source: Path, folder: Path | None) -> None:
    """A try processContent refused at once (nothing was queued): its saved copy and folder, then its
    project, upload and record, now rather than after `[Jobs] try_it_retention_hours`."""
    if folder is not None:
        with ConfinedDir(root, folder, create=False) as saved:
            saved.unlink(source.name)
        with ConfinedDir(root, folder.parent, create=False) as uploads:
            uploads.remove_empty_folder(folder.name)
    services().mongo.forget_try_it(upload_id, project_id)
    log.info("try-it: upload %s refused at once; its copy, project and upload were removed", upload_id)


@bp.post("/jobs/try")
def try_it():
    """POST /jobs/try (key; with the cookie also the CSRF token; only with `[App] try_it`, else 404):
    multipart form with `frame_rate`, `sampling_mode` (as processContent's, optional), `request_type`
    (0 tasks only, the default; 1 tasks plus auto-annotation), `labels` (the new project's labels,
    comma-separated) and either `video` (a file, at most `[App] try_it_max_bytes`, else 413; saved as
    `<content_base>/uploads/<new projectId>/<safe name>`) or `content_path` (a file already inside
    `[Folders] content_base`, relative to it). Creates the AnnotationProject and
    AnnotationContentUpload docs as Node does (CONTRACT §2), then runs POST /api/processContent's own
    validation and queueing with the fields Node would send. Answers processContent's status and body
    (202 once queued; 4xx with its message, and what the try made removed at once) plus job_id,
    project_id, upload_id, content_path, job_url and tasks_url. 400 for a missing or bad frame rate,
    request type, labels or source, 415 for an extension not in `[Content] allowed_extensions`.
    Everything a queued try makes is removed after `[Jobs] try_it_retention_hours`
    (content/retention.py; a file named by content_path stays)."""
    svc = services()
    form = _read_form()
    if not isinstance(form, TryForm):
        return form
    root = svc.settings.content_root().root
    project_id, upload_id = ObjectId(), ObjectId()
    placed = _place_source(form, root, project_id, upload_id)
    if not isinstance(placed, Placed):
        return placed
    source, original, folder = placed
    _restart_database_deadline()
    content_path = _node_content_path(source)
    now = utcnow()
    svc.mongo.create_project_and_upload(
        project_doc(project_id, f"Try it: {Path(original).name}"[:200], now, form.labels),
        video_upload_doc(upload_id, project_id, content_path, int(form.frame_rate), now, form.request_type))
    log.info("try-it: upload %s of project %s created for %s, request_type=%d (%s)", upload_id, project_id,
             svc.redact.text(content_path), form.request_type, RequestType.NAMES[form.request_type])
    answer, status = process_content_fields({
        "upload_id": str(upload_id), "auth_key": svc.settings.app.api_keys[0], "project_id": str(project_id),
        "frame_rate": form.frame_rate, "content_path": content_path, "force_write": "0",
        "auto_anno_version": str(form.request_type),  # version 1 with auto-annotation, 0 without
        "request_type": str(form.request_type),
        "content_type": str(ContentType.VIDEO), "sampling_mode": form.sampling_mode})
    if status >= 400:
        _forget_refused(root, upload_id, project_id, source, folder)
    job_id = content_job_id(upload_id)
    return jsonify({**(answer.get_json(silent=True) or {}), "job_id": job_id, "project_id": str(project_id),
                    "upload_id": str(upload_id), "content_path": svc.redact.text(content_path),
                    "job_url": url_for("jobs_page.api_job", job_id=job_id),
                    "tasks_url": url_for("jobs_page.upload_page", upload_id=str(upload_id))}), status
