"""GET /storage/<key>?expires=&signature=: objects of local storage for browsers and the Node
platform, through the expiring signed URLs the service writes where S3 would have presigned ones
(`media_service.signed_urls`). No key, no session: the signature is the permission, for that one
object until it expires. Range requests are answered (206), so a video can seek."""
from __future__ import annotations

import logging
import mimetypes
import os

from flask import Blueprint, Response, jsonify, request, send_file

from media_service.errors import PathRefused
from media_service.paths import fd_path, open_confined
from media_service.storage import LocalStorage
from media_service.web.platform import services

log = logging.getLogger(__name__)

bp = Blueprint("stored_objects", __name__)


def _error(status: int, message: str):
    return jsonify({"message": message, "status": status}), status


def serve_local_object(storage: LocalStorage, key: str) -> Response | tuple:
    """The object at `key`, streamed with its type, ETag and Last-Modified, answering HTTP range
    requests. It is opened without following links and must be a regular file inside the storage
    folder (no listing, nothing outside it): 404 for anything else."""
    parts = key.split("/")
    if "\x00" in key or any(not part or part.startswith(".") for part in parts):
        return _error(404, "no such object")
    try:
        fd = open_confined(storage.root, storage.root.joinpath(*parts))
    except PathRefused:
        return _error(404, "no such object")
    try:
        info = os.fstat(fd)
        response = send_file(fd_path(fd), mimetype=mimetypes.guess_type(key)[0] or "application/octet-stream",
                             conditional=True, etag=f"{info.st_size:x}-{info.st_mtime_ns:x}",
                             last_modified=info.st_mtime, max_age=0)
    finally:
        os.close(fd)  # send_file opened its own descriptor on the same file
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/storage/<path:key>")
def stored_object(key: str):
    storage = services().storage
    if not isinstance(storage, LocalStorage) or storage.signer is None:
        return _error(404, "objects are not served here (S3 storage, or no signing key)")
    problem = storage.signer.check(key, request.args.get("expires"), request.args.get("signature"))
    if problem:
        log.info("refused a storage URL: %s", problem)  # never the signature itself
        return _error(403, f"this link is not valid ({problem}); ask for a new one")
    return serve_local_object(storage, key)
