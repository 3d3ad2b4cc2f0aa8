"""Readiness a probe can use (issue 21, item 8): `/api/ready` answers within its fixed budget
(`[App] ready_budget_seconds`) whatever is down, and names each part on its own key: the
database, the storage (local folder writable, S3 bucket reachable) and the worker threads."""
from __future__ import annotations

import shutil
import threading
import time

import pytest
import requests

from tests.helpers import free_port, wait_for
from tests.s3_server import BUCKET, S3_PORT

BUDGET = 0.8


def ready(service) -> tuple[requests.Response, dict]:
    answer = requests.get(f"{service.url}/api/ready", timeout=10)
    return answer, answer.json()


def test_ready_names_every_part_and_its_budget(make_service):
    service = make_service(APP_READY_BUDGET_SECONDS=str(BUDGET))
    answer, body = ready(service)
    assert answer.status_code == 200, body
    assert body["status"] == "ready" and body["mongodb"] == "ok" and body["budget_seconds"] == BUDGET
    assert body["storage"] == service.services.storage.description
    pool = service.services.pool
    assert body["workers"] == f"{pool.size} of {pool.size} alive"
    assert {name: check["state"] for name, check in body["checks"].items()} == \
        {"database": "ok", "storage": "ok", "workers": "ok"}


def test_a_storage_folder_that_cannot_be_written_is_503_naming_storage(make_service):
    service = make_service(APP_RUN_WORKERS="false")
    root = service.services.storage.root
    shutil.rmtree(root)
    root.write_text("a file where the storage folder was")
    answer, body = ready(service)
    assert answer.status_code == 503 and body["status"] == "unavailable"
    assert body["checks"]["storage"]["state"] == "unavailable" and body["checks"]["database"]["state"] == "ok"
    assert "workers" not in body["checks"]  # this process runs none


def test_s3_down_is_503_naming_storage(make_service):
    closed = free_port()  # nothing listens there
    service = make_service(STORAGE_URL=f"s3://{BUCKET}/ready", S3_ENDPOINT_URL=f"http://127.0.0.1:{closed}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret",
                           APP_READY_BUDGET_SECONDS=str(BUDGET))
    answer, body = ready(service)
    assert answer.status_code == 503, body
    assert body["checks"]["storage"]["state"] == "unavailable" and body["checks"]["database"]["state"] == "ok"
    assert body["mongodb"] == "ok" and body["checks"]["workers"]["state"] == "ok"


def test_s3_up_is_ready(make_service, s3_server):
    service = make_service(STORAGE_URL=f"s3://{BUCKET}/ready", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret", APP_RUN_WORKERS="false")
    answer, body = ready(service)
    assert answer.status_code == 200 and body["checks"]["storage"]["state"] == "ok", body
    missing = make_service(STORAGE_URL="s3://no-such-bucket-here", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret", APP_RUN_WORKERS="false")
    answer, body = ready(missing)
    assert answer.status_code == 503 and body["checks"]["storage"]["state"] == "unavailable"


def test_mongodb_down_answers_503_within_the_budget_not_the_database_timeout(tmp_path):
    """The database's own deadline here is 10 s (what a request waits for a down server); the
    readiness answer comes within its budget all the same, and names the database."""
    from werkzeug.serving import make_server

    import mongo_manager
    from app import create_app
    from media_service.config import load_settings
    from media_service.services import Services
    from media_service.storage import open_storage
    from tests.conftest import service_env

    uri = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=10000"  # nothing listens there
    settings = load_settings(service_env(tmp_path, uri, APP_RUN_WORKERS="false", MONGODB_TIMEOUT_SECONDS="10",
                                         APP_READY_BUDGET_SECONDS=str(BUDGET)))
    services = Services(settings, mongo_manager.connect(uri, "x", timeout_ms=10000), open_storage(settings))
    server = make_server("127.0.0.1", 0, create_app(settings, services=services), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        answer = requests.get(f"http://127.0.0.1:{server.server_port}/api/ready", timeout=30)
        took = time.monotonic() - started
    finally:
        server.shutdown()
        services.mongo.close()
    body = answer.json()
    assert answer.status_code == 503 and body["mongodb"] == "unreachable", body
    assert body["checks"]["database"]["state"] == "unavailable" and body["checks"]["storage"]["state"] == "ok"
    assert body["budget_seconds"] == BUDGET
    assert took < 5, f"took {took:.1f} s: the 10 s database deadline, not the {BUDGET} s budget"


class DyingHandler:
    """A job kind whose run ends its worker thread the hard way (what an unhandled BaseException does)."""
    kind = "dying"

    def label(self, job):
        return "dying"

    def run(self, ctx):
        raise SystemExit("worker thread ends")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_ready_is_503_when_a_worker_thread_is_gone(make_service):
    service = make_service()
    pool = service.services.pool
    pool.handlers["dying"] = DyingHandler()
    service.services.mongo.jobs.enqueue("dying:1", "dying", "1", {}, 1)
    pool.notify()
    wait_for(lambda: pool.alive() < pool.size)
    ready = requests.get(f"{service.url}/api/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["workers"] == f"{pool.size - 1} of {pool.size} alive"
