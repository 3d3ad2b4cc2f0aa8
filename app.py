"""Flask application factory; `python app.py` runs the service with embedded defaults.

Embedded defaults: a mongod on loopback with its data under ./data when MONGO_URI is unset, a
local storage folder when STORAGE_URL is unset, and the background workers in this process.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from pathlib import Path

from flask import Flask, Response, g, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler

import mongo_manager
from media_service import metrics
from media_service.config import ConfigError, load_settings
from media_service.logging_setup import configure_logging
from media_service.services import Services
from media_service.web import deadlines
from media_service.web.auth import FailedKeys
from media_service.web.client import ENVIRON_KEY, RecordClient
from media_service.web.limits import BodyLimit

log = logging.getLogger("app")


def create_app(settings=None, services: Services | None = None, start_workers: bool | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings.app.log_level, settings.secrets(), settings.app.log_format)
    services = services or Services.open(settings)

    app = Flask(__name__)
    app.url_map.strict_slashes = False  # /api/processContent/ too, as a proxy or an old client may send it
    app.config["MAX_CONTENT_LENGTH"] = settings.app.max_request_bytes
    app.json.sort_keys = False
    app.extensions["media"] = services
    app.wsgi_app = RecordClient(BodyLimit(app.wsgi_app, settings.app.max_request_bytes), settings.app.trusted_proxies)
    app.extensions["failed_keys"] = FailedKeys(settings.app.failed_key_limit, settings.app.failed_key_window_seconds)

    @app.before_request
    def start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def count_request(response):
        route = request.url_rule.rule if request.url_rule else "(no route)"
        metrics.count("http_requests", route=route, method=request.method, status=str(response.status_code))
        metrics.observe("http_seconds", time.perf_counter() - g.get("started", time.perf_counter()), route=route)
        return response

    @app.get("/favicon.ico")
    def favicon():
        """The service's icon, for every page's tab (no key: browsers ask before anyone logs in)."""
        return send_from_directory(Path(__file__).parent / "media_service" / "web" / "static", "favicon.ico",
                                   mimetype="image/vnd.microsoft.icon", max_age=86400)

    @app.get("/metrics")
    def prometheus_metrics():
        """Prometheus text format: every process's metrics on this data folder, and the jobs."""
        body, content_type = metrics.exposition(app.extensions["media"].mongo)
        return Response(body, mimetype=content_type.split(";")[0], content_type=content_type)

    @app.before_request
    def database_deadline():
        # Every database call of one request together gets `timeout_seconds`: a down or hung
        # server makes the request answer 503 quickly instead of waiting on pymongo's defaults.
        # A route that waits (web/deadlines.py) gives each of its calls that deadline instead.
        if deadlines.wants_own_deadlines(app.view_functions.get(request.endpoint)):
            return
        g.database_deadline = mongo_manager.deadline(settings.mongodb.timeout_seconds)
        g.database_deadline.__enter__()

    @app.teardown_request
    def end_database_deadline(_exc):
        if "database_deadline" in g:
            g.database_deadline.__exit__(None, None, None)

    from media_service.web import platform
    app.register_blueprint(platform.bp)
    from media_service.web import openapi  # /openapi.json, /openapi.yaml, /api/docs
    app.register_blueprint(openapi.bp)
    if settings.privacy.enabled:
        from media_service.web import privacy
        app.register_blueprint(privacy.bp)
    from media_service.web import operator  # GET /jobs and /api/jobs: the operator's jobs pages
    operator.register(app, settings)
    from media_service.web import stored_objects  # GET /storage/<key>: signed URLs of local storage
    app.register_blueprint(stored_objects.bp)

    from media_service.web import cors
    cors.install(app, settings.app.cors_origins)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # JSON, keeping the exception's own headers (Allow on a 405, WWW-Authenticate, Retry-After).
        headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
        return jsonify({"message": exc.description, "status": exc.code}), exc.code, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if mongo_manager.is_unavailable(exc):
            metrics.count("mongodb_errors", where="request")
            if mongo_manager.is_slow_call(exc):  # the server answers, one call ran out of time
                log.warning("%s %s: a database call passed its %.1f s deadline (%s)", request.method, request.path,
                            settings.mongodb.timeout_seconds, exc)
                message = (f"a database call took longer than its {settings.mongodb.timeout_seconds:g} s deadline; "
                           "try again shortly")
            else:
                log.warning("%s %s: the database is unavailable (%s)", request.method, request.path, exc)
                message = "the database is unavailable; try again shortly"
            return jsonify({"message": message, "status": 503}), 503, {"Retry-After": "1"}
        log.exception("unhandled error")
        return jsonify({"message": "internal server error", "status": 500}), 500

    if settings.app.run_workers if start_workers is None else start_workers:
        services.start_workers()
    return app


def ensure_local_api_key(settings):
    """With no key configured, the embedded default makes one (in a file, never in the log)."""
    if settings.app.api_keys:
        return settings
    key_file = Path(settings.app.data_dir) / "api_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    logging.getLogger("app").warning("no APP_API_KEY set: using the key in %s (send it as auth_key)", key_file)
    return settings.replace(app={"api_keys": (key_file.read_text().strip(),)})


class _PathOnlyLog(WSGIRequestHandler):
    """Access log lines without the query string (keys sent there must never reach a log), naming
    the client as the service judged it behind its trusted proxies."""

    def address_string(self) -> str:
        return getattr(self, "environ", {}).get(ENVIRON_KEY) or super().address_string()

    def log_request(self, code="-", size="-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)


def main() -> None:
    from werkzeug.serving import make_server

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}")
    configure_logging(settings.app.log_level, settings.secrets(), settings.app.log_format)
    key_source = "APP_API_KEY" if settings.app.api_keys else str(Path(settings.app.data_dir) / "api_key")
    settings = ensure_local_api_key(settings)
    app = create_app(settings)
    server = make_server(settings.ip.bind_ip, settings.ip.port, app, threaded=True, request_handler=_PathOnlyLog)
    stopped = threading.Event()

    def stop(*_):
        if not stopped.is_set():
            stopped.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    here = "localhost" if settings.ip.bind_ip in ("0.0.0.0", "::", "127.0.0.1", "::1") else settings.ip.bind_ip
    log.info("serving on http://%s:%d: the jobs page is http://%s:%d/jobs (the key: %s), the API's description "
             "http://%s:%d/api/docs", settings.ip.bind_ip, settings.ip.port, here, settings.ip.port,
             key_source, here, settings.ip.port)
    server.serve_forever()
    log.info("stopping: workers finish their current task (up to %.0fs)", settings.jobs.shutdown_grace_seconds)
    app.extensions["media"].close()
    log.info("stopped")


if __name__ == "__main__":
    main()
