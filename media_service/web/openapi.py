"""The OpenAPI description of every route (`openapi.yaml` beside this file) and a page to read it.

GET /openapi.json, GET /openapi.yaml: the description as this app serves it. Paths the app has
no route for are left out (the privacy API when `[Privacy] enabled = false`; routes marked
`x-pending` until they exist), and with `[Privacy] require_key` the privacy routes say that a
key is required. GET /api/docs: Swagger UI on /openapi.json, its files served from
`static_docs/` (vendored from the npm package swagger-ui-dist: no CDN, nothing from another host).
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import yaml
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, send_from_directory

SPEC_FILE = Path(__file__).with_name("openapi.yaml")
STATIC_DIR = Path(__file__).with_name("static_docs")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}  # Flask adds them to every route; not documented one by one
ASSET_MAX_AGE = 3600
# By suffix, not from the system's mime.types (which differ between hosts); the rest is text.
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".md": "text/markdown"}

bp = Blueprint("openapi", __name__, template_folder="templates")


@functools.cache
def source_spec() -> dict:
    """The description as written (every path, pending ones too). Read once; never modified."""
    with SPEC_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: `/api/docs/<path:filename>` -> `/api/docs/{filename}`."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def app_operations(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every route the app serves."""
    return {(openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
            for method in (rule.methods or ()) if method not in IMPLICIT_METHODS}


def spec_operations(spec: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec.get("paths", {}).items() for method in item
            if method in HTTP_METHODS}


def served_spec(app: Flask) -> dict:
    """The description for this app: only what it routes, and the privacy key as configured."""
    served = app_operations(app)
    spec = copy.deepcopy(source_spec())
    paths = {}
    for path, item in spec["paths"].items():
        kept = {key: value for key, value in item.items() if key not in HTTP_METHODS or (path, key) in served}
        if any(key in HTTP_METHODS for key in kept):
            paths[path] = kept
    spec["paths"] = paths
    settings = app.extensions["media"].settings
    if settings.privacy.require_key:  # no anonymous alternative: a key is required
        for item in paths.values():
            for method, operation in item.items():
                if method in HTTP_METHODS and "privacy" in operation.get("tags", ()) and operation.get("security"):
                    operation["security"] = [requirement for requirement in operation["security"] if requirement]
    return spec


def _spec() -> dict:
    spec = current_app.extensions.get("openapi")
    if spec is None:  # the routes are all registered by the first request
        spec = current_app.extensions["openapi"] = served_spec(current_app)
    return spec


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(_spec())


@bp.get("/openapi.yaml")
def openapi_yaml():
    # The charset said: without it a client guesses, and the description has non-ASCII text ("§").
    return Response(yaml.safe_dump(_spec(), sort_keys=False, allow_unicode=True),
                    content_type="application/yaml; charset=utf-8")


@bp.get("/api/docs")
def docs_page():
    """Swagger UI; everything it loads comes from this service (no inline script either):
    templates/openapi/docs.html."""
    page = render_template("openapi/docs.html", title=f"{source_spec()['info']['title']} API")
    return Response(page, mimetype="text/html")


@bp.get("/api/docs/<path:filename>")
def docs_asset(filename: str):
    mimetype = ASSET_TYPES.get(Path(filename).suffix.lower(), "text/plain")
    return send_from_directory(STATIC_DIR, filename, mimetype=mimetype, max_age=ASSET_MAX_AGE)
