"""Production layout: `gunicorn wsgi:app -k gevent --worker-connections 1000` (this file is read
from the working directory).

The gevent web workers only validate and queue; a separate `worker.py` process does the CPU work,
so no decode or encode ever runs on gevent's event loop (bench/bench_gevent.py: p99 38.7 ms under
load this way, 8.7 s with the worker pool inside the gevent workers). Without MONGO_URI the master first starts
the embedded MongoDB as its own process, and every process shares it.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

bind = f"{os.environ.get('IP_SERVER_IP', '0.0.0.0')}:{os.environ.get('PORT', '8081')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
worker_connections = 1000
timeout = 30
graceful_timeout = 30
accesslog = "-"

_children: list[subprocess.Popen] = []
_here = Path(__file__).resolve().parent


def _start_embedded_mongo(server) -> None:
    data_dir = Path(os.environ.get("APP_DATA_DIR", _here / "data"))
    uri_file = data_dir / "mongo" / "uri"
    uri_file.unlink(missing_ok=True)
    uri_file.parent.mkdir(parents=True, exist_ok=True)
    port = os.environ.get("MONGODB_EMBEDDED_PORT", "0")
    _children.append(subprocess.Popen([sys.executable, "-m", "media_service.embedded_mongo", "--db-file",
                                       str(data_dir / "mongo" / "media.sqlite"), "--port", port,
                                       "--uri-file", str(uri_file)]))
    deadline = time.monotonic() + 60
    while not uri_file.exists():
        if _children[-1].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the embedded MongoDB did not start")
        time.sleep(0.1)
    os.environ["MONGO_URI"] = uri_file.read_text().strip()
    server.log.info("embedded MongoDB started for all processes")


def on_starting(server):
    if not (os.environ.get("MONGO_URI") or os.environ.get("MONGODB_USER_NAME")):
        _start_embedded_mongo(server)
    # JOBS_LAYOUT: "worker-process" (the default, chosen by bench/bench_gevent.py), "web-threads"
    # (the worker pool inside each gevent web process; kept for that comparison), or "none" (the
    # workers run elsewhere: `python worker.py` on other hosts).
    layout = os.environ.get("JOBS_LAYOUT", "worker-process")
    os.environ["APP_RUN_WORKERS"] = "true" if layout == "web-threads" else "false"
    if layout == "worker-process":
        _children.append(subprocess.Popen([sys.executable, str(_here / "worker.py")]))
        server.log.info("worker.py started (pid %s)", _children[-1].pid)


def on_exit(server):
    for child in reversed(_children):  # the worker first, the database last
        child.terminate()
        try:
            child.wait(float(os.environ.get("JOBS_SHUTDOWN_GRACE_SECONDS", "30")) + 5)
        except subprocess.TimeoutExpired:
            child.kill()
