"""The routes the Node platform calls (CONTRACT §1). Handlers validate and record; workers work."""
from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import BadRequest

from media_service import media as vp
from media_service.contract import (
    ACTIVE_STATES,
    ALREADY_HAS_TASKS_CODE,
    ANNOTATION_KIND,
    CONTENT_KIND,
    ContentJobParams,
    ContentType,
    RequestType,
    content_job_id,
    video_hold,
    video_name,
)
from media_service.detectors.factory import problem as detector_problem
from media_service.logging_setup import job_context
from media_service.mongo import Job, VideoBusy
from media_service.web.auth import count_wrong_key, key_matches
from media_service.web.client import current_client
from media_service.web.content_request import (
    AUTH_ERROR,
    AUTO_ANNO_INFO,
    OBJECT_ID_HELP,
    ContentRequest,
    Rejection,
    check_frame_rate,
    check_source,
    parse_object_id,
    validate_fields,
)
from media_service.web.left_out import left_out_warning
from media_service.web.readiness import run_checks

log = logging.getLogger(__name__)
bp = Blueprint("platform", __name__, url_prefix="/api", template_folder="templates")


def services():
    return current_app.extensions["media"]


def request_fields() -> dict[str, str]:
    """multipart, url-encoded or JSON: every value as the string Node would send."""
    if request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            raise BadRequest("the JSON body is nested too deeply") from None
        if not isinstance(body, dict):
            return {}
        return {_json_text(k): _json_text(v) for k, v in body.items()}
    return {k: v for k, v in request.form.items()}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_text(value) -> str:
    """A JSON value as a string (null as empty). A lone surrogate (JSON's "\\ud800" escape names no
    character, and no str holding one can be encoded) becomes U+FFFD, as invalid UTF-8 does in a form."""
    return _LONE_SURROGATE.sub("\ufffd", "" if value is None else str(value))


def _job_state(job: Job) -> dict:
    annotation = (job.result or {}).get("annotation")
    return {"upload_id": str(job.params["upload_id"]), "request_type": job.params.get("request_type"),
            "state": job.state, "stage": job.stage, "progress": job.progress,
            "eta_seconds": job.eta_seconds, "attempts": job.attempts, "error": job.last_error,
            "annotation": annotation, "warning": left_out_warning(annotation)}


def _reject(rejection: Rejection):
    """Answer a rejection (configured keys masked wherever the caller's values are echoed) and
    record it on the upload doc, but only on an upload still waiting: never on one that has
    finished or whose run is queued or running (a bad or unauthenticated request changes nothing)."""
    svc = services()
    body, message = svc.redact.value(rejection.body), svc.redact.text(rejection.message)
    if rejection.upload_id is not None:
        job = svc.mongo.jobs.get(content_job_id(rejection.upload_id))
        if not (job and job.state in ACTIVE_STATES):
            svc.mongo.record_upload_error(rejection.upload_id, rejection.record_code or rejection.status, message,
                                          only_if_waiting=True)
    log.warning("processContent rejected (%d): %s", rejection.status, message)
    return jsonify(body), rejection.status


@bp.post("/processContent")
def process_content():
    return process_content_fields(request_fields())


def process_content_fields(fields: dict[str, str]):
    """CONTRACT §1 on these fields: validate, record a rejection, queue. The route's whole logic, also
    called by the jobs page's try-it form (web/operator/try_it.py) with the fields Node would send."""
    svc = services()
    result = validate_fields(fields, svc.settings.app.api_keys, svc.mongo.max_auto_annotation_version)
    if isinstance(result, Rejection) and result.body is AUTH_ERROR and fields.get("auth_key"):
        count_wrong_key()  # a key sent and wrong: 429 once this client has sent too many
    if isinstance(result, Rejection):
        label = f"upload={result.upload_id}" if result.upload_id else "upload=?"
        with job_context(label):
            return _reject(result)
    with job_context(f"upload={result.upload_id}"):
        upload = svc.mongo.get_upload(result.upload_id)
        if upload is None:
            return _reject(Rejection(404, {"message": f"upload {result.upload_id} not found"}))
        job = svc.mongo.jobs.get(content_job_id(result.upload_id))
        if job and job.state in ACTIVE_STATES:
            log.info("processContent repeated while %s; nothing new started", job.state)
            return jsonify({**_job_state(job), "message": "already queued or running"}), 200
        problem = (_check_project(result, upload)
                   or check_source(result, svc.settings.content_root(), svc.settings.content.allowed_extensions,
                                   svc.settings.content.image_extensions))
        problem = problem or _check_frame_rate(result) or _check_annotation(result)
        if problem:
            return _reject(problem)
        if (result.request_type != RequestType.ANNOTATIONS_ONLY and not result.force_write
                and svc.mongo.find_video_tasks(result.project_id, video_name(result.source))):
            return _reject(Rejection(409, {"message": "this video already has tasks; send force_write 1 to "
                                                      "replace them"}, result.upload_id,
                                     record_code=ALREADY_HAS_TASKS_CODE))
        try:
            created, job = _queue(result, upload)
        except VideoBusy as busy:
            return _reject(Rejection(409, {"message": f"this video is being processed for another upload "
                                                      f"({busy.holder}); send it again when that run has ended"},
                                     result.upload_id))
        if not created:
            return jsonify({**_job_state(job), "message": "already queued or running"}), 200
        log.info("queued: %s, request_type=%d (%s), at %d fps, %d frames a task (force_write=%d, content_type=%d)",
                 result.content_path, result.request_type, RequestType.NAMES.get(result.request_type),
                 result.frame_rate, job.params["frames_per_task"], result.force_write, result.content_type)
        svc.notify_workers()
        return jsonify({**_job_state(job), "message": "accepted; processing in the background"}), 202


def _check_project(request: ContentRequest, upload: dict) -> Rejection | None:
    """The upload must belong to the project the request names, and that project must exist."""
    owner = upload.get("projectId")
    if str(owner) != str(request.project_id):  # LoopBack may store the reference as its hex string
        return Rejection(400, {"message": f"upload {request.upload_id} belongs to project {owner}, "
                                          f"not {request.project_id}"}, request.upload_id)
    if services().mongo.get_project(request.project_id) is None:
        return Rejection(404, {"message": f"project {request.project_id} not found"}, request.upload_id)
    return None


def _check_frame_rate(request: ContentRequest) -> Rejection | None:
    """No rate above the source's own, checked before anything is queued: a video's headers are
    read (milliseconds; not the worker's full probe), an image folder has a configured limit."""
    reads_video = request.content_type == ContentType.VIDEO and request.request_type != RequestType.ANNOTATIONS_ONLY
    source_rate = vp.source_frame_rate(request.source) if reads_video else None
    return check_frame_rate(request, source_rate, services().settings.content.max_image_frame_rate)


def _check_annotation(request: ContentRequest) -> Rejection | None:
    """Request types 1 and 2: the configured detector can work, the version is new for this video,
    and for type 2 the video has tasks to annotate."""
    if request.request_type == RequestType.TASKS_ONLY:
        return None
    svc = services()
    problem = detector_problem(svc.settings)
    if problem:
        return Rejection(422, {"message": f"auto-annotation is not available: {problem}"}, request.upload_id)
    tasks = svc.mongo.find_video_tasks(request.project_id, video_name(request.source))
    applied = max((task.get("AutoAnnotationVersion") or 0 for task in tasks), default=0)
    if request.auto_anno_version <= applied:
        return Rejection(400, {"message": f"auto_anno_version {request.auto_anno_version} is not greater than the "
                                          f"version already applied to this video ({applied})",
                               "INFO": AUTO_ANNO_INFO}, request.upload_id)
    if request.request_type == RequestType.ANNOTATIONS_ONLY and not tasks:
        return Rejection(404, {"message": "this video has no tasks to annotate; send request_type 1 to cut and "
                                          "annotate it"}, request.upload_id)
    return None


def _frames_per_task(upload: dict) -> int:
    """CONTRACT §2: tasks are cut by the frames_per_task Node set on the upload doc; the configured
    value only when that is absent or not a whole number from 1 to 10,000."""
    value = upload.get("frames_per_task")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value) \
            and 1 <= value <= 10000:
        return int(value)
    return services().settings.content.frames_per_task


def _queue(request: ContentRequest, upload: dict) -> tuple[bool, Job]:
    svc = services()
    name = video_name(request.source)
    params = ContentJobParams(
        upload_id=request.upload_id, project_id=request.project_id, frame_rate=request.frame_rate,
        force_write=request.force_write, request_type=request.request_type, content_type=request.content_type,
        auto_anno_version=request.auto_anno_version, frames_per_task=_frames_per_task(upload),
        content_path=request.content_path, source=str(request.source), video_name=name,
        sampling_mode=request.sampling_mode or svc.settings.content.sampling_mode)
    kind = ANNOTATION_KIND if request.request_type == RequestType.ANNOTATIONS_ONLY else CONTENT_KIND
    return svc.mongo.jobs.enqueue(content_job_id(request.upload_id), kind, str(request.upload_id),
                                 params.to_doc(), svc.settings.jobs.max_attempts,
                                 holds=video_hold(request.project_id, name))


def _authorised_id(fields, name: str, keyless: bool = False):
    """The ObjectId field `name` of a keyed request, checked in that order: (id, None), or
    (None, the error answer). The key comes as `auth_key` or in the X-API-Key header. With
    `keyless`, a caller that sends no key at all is let through from `[App] keyless_networks`."""
    object_id, error = _object_id_or_error(fields, name)
    if error:
        return None, error
    key = fields.get("auth_key") or request.headers.get("X-API-Key")
    sent = "auth_key" in fields or "X-API-Key" in request.headers  # even an empty key must be right
    client = current_client()
    if not sent and keyless and client.in_networks(services().settings.app.keyless_networks):
        log.info("%s without a key from %s, a trusted network", request.path, client.address)
        return object_id, None
    if not (key and key_matches(key, services().settings.app.api_keys)):
        if key:
            count_wrong_key()  # a key sent and wrong: 429 once this client has sent too many
        return None, (jsonify(AUTH_ERROR), 401)
    return object_id, None


def _object_id_or_error(fields, name: str):
    raw = fields.get(name)
    if not raw:
        return None, (jsonify({"message": f"missing {name} param"}), 400)
    object_id = parse_object_id(raw)
    if object_id is None:
        return None, (jsonify(services().redact.value({raw: OBJECT_ID_HELP})), 400)
    return object_id, None


@bp.get("/processContent/status")
def content_status():
    """State of an upload's job (for people and scripts; Node reads the upload doc). Needs the key."""
    upload_id, error = _authorised_id(request.args, "upload_id")
    if error:
        return error
    job = services().mongo.jobs.get(content_job_id(upload_id))
    if job is None:
        return jsonify({"message": f"no job for upload {upload_id}"}), 404
    return jsonify(_job_state(job)), 200


@bp.post("/processContent/cancel")
def cancel_content():
    """Cancel a queued or running job; its partial tasks and videos are removed."""
    upload_id, error = _authorised_id(request_fields(), "upload_id")
    if error:
        return error
    with job_context(f"upload={upload_id}"):
        job = services().mongo.jobs.request_cancel(content_job_id(upload_id))
        if job is None:
            ended = services().mongo.jobs.get(content_job_id(upload_id))
            if ended is None:
                return jsonify({"message": "no job for this upload"}), 404
            return jsonify({**_job_state(ended), "message": f"the job has already ended ({ended.state}); "
                                                           "nothing to cancel"}), 409
        log.info("cancel requested")
        services().notify_workers()
        # 202: stopping. Whichever worker holds the job stops at its next frame or commit, even
        # after its last one, and removes what it made; the upload then reads status 2, error 499.
        return jsonify({**_job_state(job), "message": "cancel requested; the job is stopping"}), 202


@bp.post("/createDataSet")
def create_dataset():
    """Build a dataset version in the background: 201 when queued, 200 with the state when it is
    already queued, running or complete. Node sends no key: a caller without one is accepted from
    `[App] keyless_networks` only (loopback by default); a key that is sent must be right."""
    version_id, error = _authorised_id(request_fields(), "data_version_id", keyless=True)
    if error:
        return error
    svc = services()
    with job_context(f"dataset={version_id}"):
        version = svc.mongo.get_dataset_version(version_id)
        if version is None:
            return jsonify({"message": f"dataset version {version_id} not found"}), 404
        if not version.get("taskList"):
            return jsonify({"message": f"dataset version {version_id} has no tasks in its taskList"}), 400
        state = (version.get("taskStatus") or {}).get("state")
        if state == "complete":
            return jsonify({"data_version_id": str(version_id), "state": "complete",
                            "message": "this version is already built; edit it on the platform to rebuild"}), 200
        created, job = svc.mongo.jobs.enqueue_dataset_build(version_id, svc.settings.dataset.task_attempts + 1)
        answer = {"data_version_id": str(version_id), "state": job.state, "progress": job.progress}
        if not created:
            return jsonify({**answer, "message": "already queued or running"}), 200
        log.info("dataset build queued")
        svc.notify_workers()
        return jsonify({**answer, "message": "accepted; building in the background"}), 201


@bp.post("/editDataSet")
def edit_dataset():
    """The old service never had it. Datasets are edited on the platform, which clears a version's
    taskStatus; /api/createDataSet then rebuilds it."""
    return jsonify({"message": "editDataSet is not supported: edit the dataset on the platform (which clears "
                               "the version's taskStatus), then call /api/createDataSet to rebuild it"}), 501


@bp.get("/health")
def health():
    return jsonify({"status": "ok"}), 200


@bp.get("/ready")
def ready():
    """200 when this process can do its work: MongoDB answers, the storage can be written (local
    folder) or its bucket reached (S3), and every worker thread it was configured with is alive (a
    process without workers, a gunicorn web worker, has no "workers" check). Answered within
    `[App] ready_budget_seconds`; each part on its own key of "checks"."""
    svc = services()
    budget = svc.settings.app.ready_budget_seconds
    checks = run_checks(svc, budget)
    ok = all(check["state"] == "ok" for check in checks.values())
    state = {"mongodb": "ok" if checks["database"]["state"] == "ok" else "unreachable",
             "storage": svc.storage.description if svc.storage else None}
    if "workers" in checks:
        state["workers"] = checks["workers"]["detail"]
    return jsonify({"status": "ready" if ok else "unavailable", **state, "checks": checks,
                    "budget_seconds": budget}), 200 if ok else 503


_FORM_FIELDS = [("upload_id", ""), ("auth_key", ""), ("project_id", ""), ("frame_rate", "5"),
                ("content_path", "./contents/uploads/"), ("force_write", "0"), ("auto_anno_version", "0"),
                ("request_type", "0"), ("content_type", "1")]


@bp.get("/processContent")
def process_content_form():
    """A form for trying the route by hand (CONTRACT §1), from templates/platform/process_content.html."""
    return Response(render_template("platform/process_content.html", fields=_FORM_FIELDS), mimetype="text/html")
