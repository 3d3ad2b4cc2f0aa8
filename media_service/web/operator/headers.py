"""The headers of every answer of the jobs pages: no sniffing, no referrer, nothing stored (but the
page's own assets and task videos), and for HTML no framing and a Content-Security-Policy that lets
the page load only from this service (task videos also from the S3 endpoint, presigned)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from media_service.storage import LocalStorage
from media_service.web.platform import services

CACHEABLE = ("jobs_page.static", "jobs_media.media")


def page_headers(response):
    """after_request of every blueprint of the jobs pages."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.endpoint not in CACHEABLE:
        response.headers["Cache-Control"] = "no-store"
    if response.mimetype == "text/html":
        response.headers["X-Frame-Options"] = "DENY"
        media = " ".join(filter(None, ("'self'", storage_origin())))
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"media-src {media}; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return response


def storage_origin() -> str:
    """Where task videos play from besides this service: the S3 endpoint's origin (presigned URLs)."""
    storage = services().storage
    if storage is None or isinstance(storage, LocalStorage):
        return ""
    try:
        parts = urlsplit(storage.url("contents/origin-probe.mp4", 60))
        return f"{parts.scheme}://{parts.netloc}"
    except Exception:  # no credentials: nothing will play from there anyway
        return ""
