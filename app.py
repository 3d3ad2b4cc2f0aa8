"""Flask application factory; `python app.py` runs the service with embedded defaults.

Embedded defaults: a mongod on loopback with its data under ./data when MONGO_URI is unset, a
local storage folder when STORAGE_URL is unset, and the background workers in this process.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from flask import Flask, Response, g, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler

import mongo_manager
from media_service import metrics
from media_service.bootstrap import bootstrap, configure
from media_service.config import load_settings
from media_service.services import Services
from media_service.web import deadlines
from media_service.web.auth import FailedKeys
from media_service.web.client import ENVIRON_KEY, RecordClient
from media_service.web.limits import BodyLimit

log = logging.getLogger("app")


def create_app(settings=None, services: Services | None = None, start_workers: bool | None = None) -> Flask:
    settings = settings or load_settings()
    configure(settings)
    services = services or Services.open(settings)
    app = Flask(__name__)
    _configure(app, settings, services)
    _count_requests(app)
    _add_service_routes(app)
    _hold_database_deadlines(app, settings)
    _register_blueprints(app, settings)
    _answer_errors_in_json(app, settings)
    if settings.app.run_workers if start_workers is None else start_workers:
        services.start_workers()
    return app


def _configure(app: Flask, settings, services: Services) -> None:
    app.url_map.strict_slashes = False  # /api/processContent/ too, as a proxy or an old client may send it
    app.config["MAX_CONTENT_LENGTH"] = settings.app.max_request_bytes
    app.json.sort_keys = False
    app.extensions["media"] = services
    app.wsgi_app = RecordClient(BodyLimit(app.wsgi_app, settings.app.max_request_bytes), settings.app.trusted_proxies)
    app.extensions["failed_keys"] = FailedKeys(settings.app.failed_key_limit, settings.app.failed_key_window_seconds)


def _count_requests(app: Flask) -> None:
    @app.before_request
    def start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def count_request(response):
        route = request.url_rule.rule if request.url_rule else "(no route)"
        metrics.count("http_requests", route=route, method=request.method, status=str(response.status_code))
        metrics.observe("http_seconds", time.perf_counter() - g.get("started", time.perf_counter()), route=route)
        return response


def _add_service_routes(app: Flask) -> None:
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


def _hold_database_deadlines(app: Flask, settings) -> None:
    # Every database call of one request together gets `timeout_seconds`: a down or hung
    # server makes the request answer 503 quickly instead of waiting on pymongo's defaults.
    # A route that waits (web/deadlines.py) gives each of its calls that deadline instead.
    @app.before_request
    def database_deadline():
        deadlines.start_request_deadline(app.view_functions.get(request.endpoint), settings.mongodb.timeout_seconds)

    @app.teardown_request
    def end_database_deadline(_exc):
        deadlines.end_request_deadline()


def _register_blueprints(app: Flask, settings) -> None:
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


def _answer_errors_in_json(app: Flask, settings) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # JSON, keeping the exception's own headers (Allow on a 405, WWW-Authenticate, Retry-After).
        headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
        return jsonify({"message": exc.description, "status": exc.code}), exc.code, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if mongo_manager.is_unavailable(exc):
            return _database_unavailable(exc, settings.mongodb.timeout_seconds)
        log.exception("unhandled error")
        return jsonify({"message": "internal server error", "status": 500}), 500


def _database_unavailable(exc: Exception, timeout_seconds: float):
    metrics.count("mongodb_errors", where="request")
    if mongo_manager.is_slow_call(exc):  # the server answers, one call ran out of time
        log.warning("%s %s: a database call passed its %.1f s deadline (%s)", request.method, request.path,
                    timeout_seconds, exc)
        message = f"a database call took longer than its {timeout_seconds:g} s deadline; try again shortly"
    else:
        log.warning("%s %s: the database is unavailable (%s)", request.method, request.path, exc)
        message = "the database is unavailable; try again shortly"
    return jsonify({"message": message, "status": 503}), 503, {"Retry-After": "1"}


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

    started = bootstrap(local_key=True)
    settings, key_source = started.settings, started.key_source
    app = create_app(settings, started.services)
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
