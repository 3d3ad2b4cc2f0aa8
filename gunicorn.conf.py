"""Production layout: `gunicorn wsgi:app -k gevent --worker-connections 1000` (this file is read
from the working directory).

The gevent web workers only validate and queue; a separate `worker.py` process does the CPU work,
so no decode or encode ever runs on gevent's event loop (bench/bench_gevent.py: p99 38.7 ms under
load this way, 8.7 s with the worker pool inside the gevent workers). The settings are read here
exactly as the service reads them (config.cfg, CONFIG_SECRETS_FILE, the environment): without a
MongoDB server configured, the master starts the embedded mongod first and every process shares it.
"""
import os
import subprocess
import sys
from pathlib import Path

from media_service.bootstrap import ExitCode, configure, settings_or_exit, stop
from media_service.config import mongo_uri_for
from media_service.embedded_mongo import EmbeddedMongo, EmbeddedMongoError, from_settings

# The start-up's steps are media_service/bootstrap.py's, with its exit codes: the settings when
# gunicorn reads this file, logging and the embedded database once the master starts.
_settings = settings_or_exit()

bind = f"{_settings.ip.bind_ip}:{_settings.ip.port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
worker_connections = 1000
timeout = 30
graceful_timeout = 30
accesslog = "-"
# The path without its query string (%(U)s, not the request line %(r)s) and no referer: keys sent
# in a query string must never reach a log.
access_log_format = '%({media_service.client}e)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'
# The client column is the service's own judgement behind `[App] trusted_proxies` (web/client.py),
# and gunicorn trusts X-Forwarded-Proto (https) from the same proxies and no others.
forwarded_allow_ips = ",".join(str(network) for network in _settings.app.trusted_proxies)

_children: list[subprocess.Popen] = []
_embedded: list[EmbeddedMongo] = []
_here = Path(__file__).resolve().parent


def on_starting(server):
    configure(_settings)
    if mongo_uri_for(_settings) is None:
        embedded = from_settings(_settings)
        try:
            embedded.start()  # the web workers and worker.py find it through the data directory
        except EmbeddedMongoError as exc:
            stop(ExitCode.DATABASE_UNREACHABLE, f"embedded MongoDB: {exc}")
        _embedded.append(embedded)
    # JOBS_LAYOUT: "worker-process" (the default, chosen by bench/bench_gevent.py), "web-threads"
    # (the worker pool inside each gevent web process; kept for that comparison), or "none" (the
    # workers run elsewhere: `python worker.py` on other hosts).
    layout = os.environ.get("JOBS_LAYOUT", "worker-process")
    os.environ["APP_RUN_WORKERS"] = "true" if layout == "web-threads" else "false"
    if layout == "worker-process":
        _children.append(subprocess.Popen([sys.executable, str(_here / "worker.py")]))
        server.log.info("worker.py started (pid %s)", _children[-1].pid)


def on_exit(server):
    for child in _children:
        child.terminate()
        try:
            child.wait(_settings.jobs.shutdown_grace_seconds + 5)
        except subprocess.TimeoutExpired:
            child.kill()
    for embedded in _embedded:  # the database last, once the workers have handed their jobs back
        embedded.stop()
