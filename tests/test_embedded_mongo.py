"""The embedded default: a real mongod started by the service itself when MONGO_URI is unset (issue 10)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from media_service import embedded_mongo
from media_service.embedded_mongo import EmbeddedMongo, EmbeddedMongoError
from tests.conftest import ROOT
from tests.helpers import (
    clean_service_env,
    fields_for,
    free_port,
    new_upload,
    post_node,
    wait_for,
    wait_for_upload,
    wait_until_ready,
)
from tests.media import make_video

LOCAL_KEY = "local-test-key"


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A service environment with no MongoDB configured: the embedded server it is."""
    return clean_service_env(**{
                "PORT": str(free_port()), "MONGODB_EMBEDDED_PORT": str(free_port()), "APP_API_KEY": LOCAL_KEY,
                "APP_DATA_DIR": str(tmp_path / "data"), "FOLDERS_CONTENT_BASE": str(tmp_path / "content"),
                "FOLDERS_CONTENT_PATH_BASE": str(tmp_path / "content"),
                "FOLDERS_TASK_BASE": str(tmp_path / "tasks"), "STORAGE_URL": str(tmp_path / "storage"),
                "JOBS_POLL_SECONDS": "0.1", "CONTENT_TASKS_PER_PART": "0", **extra})


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "a"))


def node_client(env: dict) -> MongoClient:
    """What the Node platform or mongosh would open: the URI the service logs."""
    return MongoClient(f"mongodb://127.0.0.1:{env['MONGODB_EMBEDDED_PORT']}/?directConnection=true")


def server_record(data_dir: Path) -> dict:
    return json.loads((data_dir / "mongod.port").read_text())


def test_app_starts_a_real_mongod_that_node_can_use_and_stops_it(tmp_path):
    env = embedded_env(tmp_path)
    make_video(tmp_path / "content" / "clip.mp4", 30, 25)
    server = start([sys.executable, "app.py"], env, tmp_path / "app.log")
    try:
        wait_until_ready(f"http://127.0.0.1:{env['PORT']}", server)
        record = server_record(tmp_path / "data")
        assert Path(f"/proc/{record['pid']}/exe").resolve().name == "mongod"
        with node_client(env) as node:
            assert node.server_info()["version"].startswith("6.0")
            db = node["annotation_platform"]
            upload_id, project_id = new_upload(db, "./clip.mp4")
            fields = fields_for(upload_id, project_id, "./clip.mp4", auth_key=LOCAL_KEY, frame_rate=5)
            assert post_node(f"http://127.0.0.1:{env['PORT']}/api/processContent", fields).status_code == 202
            assert wait_for_upload(db, upload_id)["status"] == 1
            tasks = list(db.AnnotationTask.find({"uploadId": upload_id}))
            assert len(tasks) == 1 and tasks[0]["original_frames"] == [1, 6, 11, 16, 21, 26]
            assert db.AnnotationFrame.count_documents({"taskId": tasks[0]["_id"]}) == 6
            assert db.AnnotationProject.find_one({"_id": project_id})["contentUploads"] == [upload_id]
    finally:
        server.terminate()
        assert server.wait(60) == 0, (tmp_path / "app.log").read_text()[-2000:]
    log = (tmp_path / "app.log").read_text()
    assert f"mongodb://127.0.0.1:{env['MONGODB_EMBEDDED_PORT']}/annotation_platform" in log
    # Stopped cleanly with the service: no process, no port record, an empty lock file (clean shutdown).
    assert not Path(f"/proc/{record['pid']}").exists() and not (tmp_path / "data" / "mongod.port").exists()
    assert (tmp_path / "data" / "mongo" / "mongod.lock").read_text() == ""
    assert "embedded MongoDB stopped (exit code 0)" in log


def test_app_and_worker_share_one_server_and_each_job_runs_once(tmp_path):
    env = embedded_env(tmp_path, CONTENT_FRAMES_PER_TASK="5")
    app = start([sys.executable, "app.py"], env, tmp_path / "app.log")
    worker = None
    try:
        wait_until_ready(f"http://127.0.0.1:{env['PORT']}", app)
        worker = start([sys.executable, "worker.py"], env, tmp_path / "worker.log")
        wait_for(lambda: "worker pool started" in (tmp_path / "worker.log").read_text(), 30,
                 what=lambda: f"the worker's pool to start: {(tmp_path / 'worker.log').read_text()[-2000:]}")
        assert "using the server already running" in (tmp_path / "worker.log").read_text()
        with node_client(env) as node:
            db = node["annotation_platform"]
            uploads = []
            for i in range(6):
                make_video(tmp_path / "content" / f"c{i}.mp4", 30 + i, 25)
                upload_id, project_id = new_upload(db, f"./c{i}.mp4")
                fields = fields_for(upload_id, project_id, f"./c{i}.mp4", auth_key=LOCAL_KEY, frame_rate=5)
                assert post_node(f"http://127.0.0.1:{env['PORT']}/api/processContent", fields).status_code == 202
                uploads.append((upload_id, 30 + i))
            for upload_id, frames in uploads:
                assert wait_for_upload(db, upload_id)["status"] == 1
                tasks = db.AnnotationTask.find({"uploadId": upload_id})
                numbers = sorted(n for t in tasks for n in t["original_frames"])
                assert numbers == list(range(1, frames + 1, 5))  # every sample once
            jobs = list(db.ProcessingJob.find({}))
            assert len(jobs) == 6 and all(j["state"] == "done" and j["attempts"] == 1 for j in jobs)
        assert len([p for p in Path("/proc").glob("[0-9]*") if _is_mongod_of(p, tmp_path / "data")]) == 1
    finally:
        for process in (worker, app):
            if process:
                process.terminate()
                process.wait(60)
    logs = (tmp_path / "app.log").read_text() + (tmp_path / "worker.log").read_text()
    assert logs.count("started (attempt 1/3") == 6


def _is_mongod_of(proc: Path, data_dir: Path) -> bool:
    try:
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return arguments[0].endswith(b"mongod") and str(data_dir / "mongo").encode() in arguments


def test_missing_binary_and_taken_port_give_one_clear_message(tmp_path, monkeypatch):
    with pytest.raises(EmbeddedMongoError) as error:
        EmbeddedMongo(tmp_path, port=0, mongod_path=str(tmp_path / "nowhere" / "mongod")).start()
    assert "[MongoDB] mongod_path" in str(error.value)

    monkeypatch.setenv("PATH", str(tmp_path))  # no mongod on PATH, and no wheel installed:
    monkeypatch.setattr(embedded_mongo.metadata, "distribution",
                        lambda name: (_ for _ in ()).throw(embedded_mongo.metadata.PackageNotFoundError(name)))
    with pytest.raises(EmbeddedMongoError) as error:
        EmbeddedMongo(tmp_path, port=0).start()
    assert "set MONGO_URI" in str(error.value) and "install mongod" in str(error.value)
    monkeypatch.undo()

    import socket
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedMongoError) as error:
            EmbeddedMongo(tmp_path, port=port).start()
    assert f"port {port}" in str(error.value) and "[MongoDB] embedded_port" in str(error.value)


def test_the_first_process_owns_the_server_others_reuse_it(tmp_path):
    owner, guest = EmbeddedMongo(tmp_path, port=0), EmbeddedMongo(tmp_path, port=0)
    uri = owner.start()
    try:
        assert guest.start() == uri and guest.process is None
        guest.stop()  # a guest never stops the owner's server
        with MongoClient(uri) as client:
            assert client.admin.command("ping")["ok"] == 1
    finally:
        owner.stop()
    assert owner.process is None and not (tmp_path / "mongod.port").exists()
