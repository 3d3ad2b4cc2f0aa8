"""The privacy API (CONTRACT §6): /process_video, /process_status, /cancel_process, /health.

Plain-text answers as the old service gave them; `/process_status` also answers JSON when asked
(`Accept: application/json` or `?format=json`). The work runs as durable `privacy` jobs.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import PurePosixPath

from flask import Blueprint, Response, current_app, jsonify, request

from media_service.contract import ACTIVE_STATES, PRIVACY_KIND, PrivacyJobParams, privacy_job_id
from media_service.errors import PathRefused
from media_service.logging_setup import job_context
from media_service.paths import check_lengths, resolve_inside
from media_service.web import deadlines
from media_service.web.auth import count_wrong_key, key_matches
from media_service.web.client import current_client

log = logging.getLogger(__name__)

bp = Blueprint("privacy", __name__)

CANCEL_WAIT_SECONDS = 30
# The old server's answers for a file it does not know, which its clients check (CONTRACT §6).
UNKNOWN = "Process does not exist"
NOT_RUNNING = "Process does not exist in the current runtime"


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _services():
    return current_app.extensions["media"]


def _file_name() -> str:
    """The file name: the `filename` query parameter, else the raw body (the first API version)."""
    name = request.args.get("filename")
    if name is None:
        name = request.get_data(cache=True, as_text=True)
    return name.strip()


def _relative_name(raw: str) -> str | None:
    """A relative path without `..`, of a usable length, as stored in job ids; None for anything else."""
    if not raw or "\x00" in raw or "\\" in raw:
        return None
    try:
        check_lengths(raw)
    except PathRefused:
        return None
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts:
        return None
    return str(path)


@bp.before_request
def require_key():
    """With `[Privacy] require_key`, every route but /health needs the key. Without it, only callers
    on this machine are answered, unless an operator opens the API with `allow_remote_without_key`."""
    settings = _services().settings
    if request.endpoint == "privacy.health":
        return None
    if not settings.privacy.require_key:
        if settings.privacy.allow_remote_without_key or current_client().on_this_machine():
            return None
        return _text("Error: this API answers only local callers until a key is configured "
                     "([Privacy] require_key with PRIVACY_API_KEY)", 403)
    given = request.headers.get("X-API-Key") or ""
    if not given and request.headers.get("Authorization", "").startswith("Bearer "):
        given = request.headers["Authorization"][7:]
    if given and key_matches(given, settings.privacy.api_keys):
        return None
    if given:
        count_wrong_key()  # 429 once this client has sent too many
    return _text("Error: unauthorized", 401)


@bp.post("/process_video")
def process_video():
    svc = _services()
    name = _relative_name(_file_name())
    if name is None:
        return _text("Error: invalid file name", 400)
    input_dir, output_dir = svc.settings.privacy.folders()
    try:
        source = resolve_inside(input_dir, name)
    except PathRefused:
        source = None
    if source is None:
        return _text("Error: invalid file name", 400)
    if not source.is_file():  # a regular file: a folder, FIFO or device is no video
        return _text("Error: file not found", 404)
    if source.suffix.lower().lstrip(".") not in svc.settings.privacy.extensions:
        return _text(f"Error: unsupported file type (accepted: {', '.join(svc.settings.privacy.extensions)})", 415)
    with job_context(f"video={name}"):
        params = PrivacyJobParams(name, str(source), str(PrivacyJobParams.output_dir_for(output_dir, name)))
        created, job = svc.mongo.jobs.enqueue(privacy_job_id(name), PRIVACY_KIND, name, params.to_doc(),
                                             svc.settings.jobs.max_attempts)
        log.info("process_video: %s", "queued" if created else f"already {job.state}")
    svc.notify_workers()
    return _text("Success: file exists.", 202)


@bp.get("/process_status")
def process_status():
    svc = _services()
    name = _relative_name(request.args.get("filename", "").strip())
    job = svc.mongo.jobs.get(privacy_job_id(name)) if name else None
    wants_json = request.args.get("format") == "json" or (
        request.accept_mimetypes.best_match(["text/plain", "application/json"]) == "application/json")
    if job is None:
        return (jsonify({"error": UNKNOWN}), 404) if wants_json else _text(UNKNOWN, 404)
    if wants_json:
        outputs = PrivacyJobParams.from_doc(job.params).outputs
        return jsonify({"filename": name, "state": job.state, "stage": job.stage,
                        "progress": job.progress, "attempts": job.attempts,
                        "error": job.last_error if job.state != "done" else None,
                        "output": outputs.final.name if job.state == "done" else None,
                        "result": job.result})
    if job.state == "failed":
        return _text(f"Error: processing failed: {job.last_error}", 500)
    if job.state == "cancelled":  # as the old service, which forgot a cancelled file
        return _text("Error: cancelled", 404)
    return _text("True" if job.state == "done" else "False", 200)


@bp.post("/cancel_process")
@deadlines.per_call  # it waits up to CANCEL_WAIT_SECONDS: far longer than one request's database budget
def cancel_process():
    svc = _services()
    name = _relative_name(_file_name())
    with deadlines.call_deadline():
        job = svc.mongo.jobs.request_cancel(privacy_job_id(name)) if name else None
    if job is None:
        return _text(NOT_RUNNING, 404)
    svc.notify_workers()
    wait_until = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < wait_until:  # answer once the work has stopped and its outputs are gone
        with deadlines.call_deadline():
            state = svc.mongo.jobs.get(privacy_job_id(name)).state
        if state not in ACTIVE_STATES:
            return _text("Success", 200)
        time.sleep(0.1)
    return _text("Success: cancelling", 202)


@bp.get("/health")
def health():
    return jsonify({}), 200


@bp.get("/")
@bp.get("/status")
def load_averages():
    """The old privacy server's status line: the load averages as a share of this machine's cores."""
    cores = os.cpu_count() or 1
    shares = ", ".join(f"{100.0 * load / cores:.2f}%" for load in os.getloadavg())
    return _text(f"System load averages (1m, 5m, 15m): {shares}", 200)
