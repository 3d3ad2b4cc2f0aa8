"""Validation of `POST /api/processContent`, in the contract's order with its exact answers.

Pure functions: fields in, either a `ContentRequest` or a `Rejection` out. The route records
rejections on the upload doc and queues accepted requests; nothing here touches the database
except through the `applied_version` callback.
"""
from __future__ import annotations

import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from bson import ObjectId

from media_service.contract import ContentType, RequestType
from media_service.errors import PathRefused
from media_service.paths import ContentRoot
from media_service.web.auth import key_matches

OBJECT_ID_HELP = ("invalid ObjectId, it must be a 12-byte input or a 24-character hex string "
                  "(EX: 6127d7b6cb8d74adc903eeb9)")
AUTH_ERROR = {"Authentication Error": "Invalid auth key. please provide the valid auth key"}
FORCE_WRITE_INFO = {"no force write": 0, "forcefully write": 1}
REQUEST_TYPE_INFO = {"only tasks without annotations": 0, "tasks plus annotations": 1, "auto annotations only": 2}
AUTO_ANNO_INFO = {
    "no auto annotation (request_type 0)": 0,
    "auto annotation version (request_type 1 or 2)": "an integer greater than the version already applied",
}
SAMPLING_MODES = ("timestamp", "adaptive")  # a request may ask for these; legacy is the operator's alone
SAMPLING_MODE_INFO = {"every frame the rate picks": "timestamp",
                      "near-duplicate frames of still scenes left out": "adaptive"}

# Matched with fullmatch: `$` alone would let "…\n" through.
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_INTEGER = re.compile(r"[ \t]*\+?[0-9]{1,9}[ \t]*")  # ASCII digits: `\d` also takes "٥" (and int() reads it)


@dataclass
class Rejection:
    status: int
    body: dict
    upload_id: ObjectId | None = None
    record_code: int | None = None  # error_code written on the upload doc, when not `status`

    @property
    def message(self) -> str:
        """The human text recorded on the upload doc."""
        if "message" in self.body:
            return str(self.body["message"])
        value, text = next(iter(self.body.items()))
        return f"{text} (got {value!r})"


@dataclass
class ContentRequest:
    upload_id: ObjectId
    project_id: ObjectId
    frame_rate: int
    content_path: str
    force_write: int
    auto_anno_version: int
    request_type: int
    content_type: int
    sampling_mode: str | None = None  # None: [Content] sampling_mode
    source: Path | None = field(default=None)  # resolved inside the content root


def _missing(name: str, upload_id: ObjectId | None) -> Rejection:
    return Rejection(400, {"message": f"missing {name} param"}, upload_id)


def _as_int(raw: str | None) -> int | None:
    if raw is None or not _INTEGER.fullmatch(raw):
        return None
    return int(raw)


def parse_object_id(raw: str | None) -> ObjectId | None:
    """A 24-hex-digit id exactly (no whitespace, no newline), else None."""
    return ObjectId(raw) if raw is not None and _OBJECT_ID.fullmatch(raw) else None


class _Rejected(Exception):
    """A step's failure: the first one ends the validation with its answer."""

    def __init__(self, rejection: Rejection):
        super().__init__(rejection.message)
        self.rejection = rejection


def validate_fields(form: Mapping[str, str], api_keys: tuple[str, ...],
                    applied_version: Callable[[ObjectId], int]) -> ContentRequest | Rejection:
    """Steps 1-8 of CONTRACT §1, in order; the first failure wins."""
    try:
        upload_id = _object_id(form, "upload_id", None)  # 1
        _check_key(form, api_keys, upload_id)  # 2
        frame_rate = _frame_rate(form, upload_id)  # 3
        project_id = _object_id(form, "project_id", upload_id)  # 4
        force_write = _integer_in(form, "force_write", (0, 1), FORCE_WRITE_INFO, upload_id)  # 5
        request_type = _integer_in(form, "request_type", (0, 1, 2), REQUEST_TYPE_INFO, upload_id)  # 6
        version = _auto_anno_version(form, request_type, upload_id, applied_version)  # 7
        content_path, content_type, sampling_mode = _content_fields(form, upload_id)  # 8
    except _Rejected as rejected:
        return rejected.rejection
    return ContentRequest(upload_id, project_id, frame_rate, content_path, force_write, version,
                          request_type, content_type, sampling_mode)


def _get(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name)
    return None if value is None else str(value)


def _object_id(form: Mapping[str, str], name: str, upload_id: ObjectId | None) -> ObjectId:
    raw = _get(form, name)
    if raw is None or raw == "":
        raise _Rejected(_missing(name, upload_id))
    parsed = parse_object_id(raw)
    if parsed is None:
        raise _Rejected(Rejection(400, {raw: OBJECT_ID_HELP}, upload_id))
    return parsed


def _check_key(form: Mapping[str, str], api_keys: tuple[str, ...], upload_id: ObjectId) -> None:
    key = _get(form, "auth_key")
    if key is not None and key == "":
        raise _Rejected(Rejection(400, {"message": "please provide the auth key"}, upload_id))
    if key is None or not key_matches(key, api_keys):
        raise _Rejected(Rejection(401, AUTH_ERROR, upload_id))


def _frame_rate(form: Mapping[str, str], upload_id: ObjectId) -> int:
    raw = _get(form, "frame_rate")
    if raw is None:
        raise _Rejected(_missing("frame_rate", upload_id))
    frame_rate = _as_int(raw)
    if frame_rate is None or frame_rate <= 0:
        raise _Rejected(Rejection(400, {raw: "frame_rate need to be an integer"}, upload_id))
    return frame_rate


def _integer_in(form: Mapping[str, str], name: str, allowed: tuple[int, ...], info: dict,
                upload_id: ObjectId) -> int:
    raw = _get(form, name)
    if raw is None:
        raise _Rejected(_missing(name, upload_id))
    value = _as_int(raw)
    if value not in allowed:
        raise _Rejected(Rejection(400, {raw: f"{name} need to be an integer.", "INFO": info}, upload_id))
    return value


def _auto_anno_version(form: Mapping[str, str], request_type: int, upload_id: ObjectId,
                       applied_version: Callable[[ObjectId], int]) -> int:
    raw = _get(form, "auto_anno_version")
    if raw is None:
        raise _Rejected(_missing("auto_anno_version", upload_id))
    version = _as_int(raw)
    if version is None:
        raise _Rejected(Rejection(400, {raw: "auto_anno_version need to be an integer.", "INFO": AUTO_ANNO_INFO},
                                  upload_id))
    if request_type == RequestType.TASKS_ONLY and version != 0:
        raise _Rejected(Rejection(400, {"message": "auto_anno_version must be 0 when request_type is 0 (tasks only)",
                                        "INFO": AUTO_ANNO_INFO}, upload_id))
    if request_type != RequestType.TASKS_ONLY and version == 0:
        raise _Rejected(Rejection(400, {"message": "auto_anno_version must be greater than 0 when request_type is "
                                                   "1 or 2", "INFO": AUTO_ANNO_INFO}, upload_id))
    if request_type != RequestType.TASKS_ONLY:
        applied = applied_version(upload_id)
        if version <= applied:
            raise _Rejected(Rejection(400, {"message": f"auto_anno_version {version} is not greater than the version "
                                                       f"already applied to this video ({applied})",
                                            "INFO": AUTO_ANNO_INFO}, upload_id))
    return version


def _content_fields(form: Mapping[str, str], upload_id: ObjectId) -> tuple[str, int, str | None]:
    """Step 8: content_path, content_type (video when empty) and sampling_mode (the setting's when empty)."""
    content_path = _get(form, "content_path")
    if content_path is None or content_path.strip() == "":
        raise _Rejected(_missing("content_path", upload_id))
    raw = _get(form, "content_type")
    content_type = ContentType.VIDEO if raw is None or raw.strip() == "" else _as_int(raw)
    if content_type not in (ContentType.VIDEO, ContentType.IMAGES):
        raise _Rejected(Rejection(400, {raw: "content_type need to be an integer.",
                                        "INFO": {"video": ContentType.VIDEO, "image": ContentType.IMAGES}}, upload_id))
    raw = _get(form, "sampling_mode")
    sampling_mode = None if raw is None or raw.strip() == "" else raw.strip().lower()
    if sampling_mode not in (None, *SAMPLING_MODES):
        raise _Rejected(Rejection(400, {raw: "sampling_mode must be timestamp or adaptive",
                                        "INFO": SAMPLING_MODE_INFO}, upload_id))
    return content_path, content_type, sampling_mode


def check_source(request: ContentRequest, content: ContentRoot, video_exts: tuple[str, ...],
                 image_exts: tuple[str, ...]) -> Rejection | None:
    """Where the content is and whether it is of an accepted kind; sets `request.source`.
    (The worker checks again when it opens the file: what is true now may not be then.)"""
    try:
        source = content.resolve(request.content_path)
    except PathRefused as exc:
        return Rejection(400, {"message": f"content_path cannot be used: {exc}"}, request.upload_id)
    request.source = source
    if request.content_type == ContentType.VIDEO:
        ext = source.suffix.lower().lstrip(".")
        if ext not in video_exts:
            return Rejection(415, {"message": f"file extension '.{ext}' is not allowed; allowed: "
                                              f"{', '.join(video_exts)}"}, request.upload_id)
    if request.request_type == RequestType.ANNOTATIONS_ONLY:
        return None  # works on the tasks already cut; the source may be gone
    try:
        mode = source.stat().st_mode
    except OSError:
        return Rejection(404, {"message": f"content not found: {request.content_path}"}, request.upload_id)
    if request.content_type == ContentType.VIDEO:
        if not stat.S_ISREG(mode):
            return Rejection(400, {"message": f"content_path is not a regular file: {request.content_path}"},
                             request.upload_id)
    elif not (stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and source.suffix.lower() == ".zip")):
        return Rejection(415, {"message": "for content_type 2 (images) content_path must be a folder or a .zip "
                                          f"of images ({', '.join(image_exts)})"}, request.upload_id)
    return None


def frame_rate_limit(source_fps: float) -> int:
    """The highest whole frame_rate a source of `source_fps` takes: its rate rounded up (29.97 fps
    takes 30), less a hair of float noise (25.0000001 takes 25)."""
    return max(1, math.ceil(source_fps - 1e-3))


def check_frame_rate(request: ContentRequest, source, image_limit: int) -> Rejection | None:
    """A task video plays at frame_rate, one sampled frame each: a rate above the source's own would
    declare frames that do not exist (every frame kept, played faster). Videos: `source`, their
    average rate as FFmpeg reports it, or as measured from the frames where the header overstates
    it (`video_processor.SourceRate`; None when it could not be read: the worker's probe reports that
    file's problem); the answer says which. Image folders have no rate:
    `[Content] max_image_frame_rate`. Request type 2 cuts nothing, so its rate is never used."""
    if request.request_type == RequestType.ANNOTATIONS_ONLY:
        return None
    if request.content_type == ContentType.IMAGES:
        if request.frame_rate > image_limit:
            return Rejection(400, {"message": f"frame_rate {request.frame_rate} is above {image_limit}, the highest "
                                              "accepted for image folders (content_type 2)",
                                   "INFO": {"highest frame_rate": image_limit}}, request.upload_id)
        return None
    if source is None:
        return None
    limit = frame_rate_limit(source.fps)
    if request.frame_rate > limit:
        judged = (f"{source.fps:.3g} fps, measured from its frames' timestamps; its header says "
                  f"{source.header_fps:.3g} fps" if source.measured else f"{source.fps:.6g} fps, from its header")
        return Rejection(400, {"message": f"frame_rate {request.frame_rate} is above the video's own frame rate "
                                          f"({judged}): send at most {limit}",
                               "INFO": {"highest frame_rate": limit,
                                        "rate used": "measured" if source.measured else "header"}},
                         request.upload_id)
    return None
