"""Durable jobs: kill -9 and resume, several processes on one database, warm start (issue 4)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bson import ObjectId

from conftest import ROOT, service_env
from helpers import fields_for, post_node, wait_for_upload
from media import decode_frames, make_video, read_number

PER_TASK = "6"


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env={**os.environ, **env},
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)


def queue(service, upload_id, project_id, name: str, frame_rate: int = 10):
    db = service.db
    db.AnnotationProject.update_one({"_id": project_id}, {"$setOnInsert": {"contentUploads": []}}, upsert=True)
    db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0, "progress": 0})
    response = post_node(f"{service.url}/api/processContent",
                         fields_for(upload_id, project_id, f"./uploads/{name}", frame_rate=frame_rate))
    assert response.status_code == 202, response.text


def snapshot(db, storage_root: Path, upload_id) -> dict:
    """What an uninterrupted run must leave: docs (minus ids and times) and stored objects."""
    tasks = list(db.AnnotationTask.find({"uploadId": upload_id}).sort("taskName", 1))
    frames = {t["taskName"]: sorted((f["frameId"], f["isEmpty"]) for f in db.AnnotationFrame.find({"taskId": t["_id"]}))
              for t in tasks}
    ignored = {"_id", "createdAt", "videoPath"}
    objects = {str(p.relative_to(storage_root)): [read_number(f) for f in decode_frames(p)]
               for p in sorted(storage_root.rglob("*.mp4"))}
    upload = db.AnnotationContentUpload.find_one({"_id": upload_id})
    return {"tasks": [{k: v for k, v in t.items() if k not in ignored} for t in tasks], "frames": frames,
            "frame_docs": db.AnnotationFrame.count_documents({}), "objects": objects,
            "upload": {k: upload.get(k) for k in ("status", "progress", "taskCount", "errorMessage")}}


@pytest.fixture
def long_clip(tmp_path):
    return make_video(tmp_path / "content" / "uploads" / "long.mp4", 250, 25, size=(480, 360))


@pytest.mark.parametrize("kill_after_tasks", [0, 1, 3])
def test_kill_9_then_restart_ends_like_an_uninterrupted_run(make_service, mongo_uri, tmp_path, long_clip,
                                                            kill_after_tasks):
    upload_id, project_id = ObjectId(), ObjectId()
    # The reference: the same request, never interrupted.
    reference = make_service(CONTENT_FRAMES_PER_TASK=PER_TASK, STORAGE_URL=str(tmp_path / "ref-store"))
    queue(reference, upload_id, project_id, "long.mp4")
    assert wait_for_upload(reference.db, upload_id)["status"] == 1
    expected = snapshot(reference.db, tmp_path / "ref-store", upload_id)
    assert len(expected["tasks"]) == 17  # 100 samples, 6 a task

    # The same request on a fresh database, run by a worker process that gets killed.
    api = make_service(APP_RUN_WORKERS="false", CONTENT_FRAMES_PER_TASK=PER_TASK,
                       STORAGE_URL=str(tmp_path / "crash-store"))
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongo_db_name,
                      CONTENT_FRAMES_PER_TASK=PER_TASK, STORAGE_URL=str(tmp_path / "crash-store"),
                      JOBS_LEASE_SECONDS="2", JOBS_HEARTBEAT_SECONDS="0.5")
    queue(api, upload_id, project_id, "long.mp4")
    job_id = f"content:{upload_id}"
    victim = start_worker(env, tmp_path / "worker1.log")
    progress_before = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = api.db.ProcessingJob.find_one({"_id": job_id})
        if job["state"] == "running" and job.get("checkpoint", {}).get("next_task", 0) >= kill_after_tasks:
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    progress_before = api.db.AnnotationContentUpload.find_one({"_id": upload_id}).get("progress", 0)
    killed_at = api.db.ProcessingJob.find_one({"_id": job_id})
    assert killed_at["state"] == "running"  # left behind by the dead worker

    survivor = start_worker(env, tmp_path / "worker2.log")
    try:
        seen: list = []
        upload = wait_for_upload(api.db, upload_id, progress_seen=seen)
    finally:
        survivor.terminate()
        survivor.wait(30)
    assert upload["status"] == 1
    progress = [p for p in seen if p is not None]
    assert all(a <= b for a, b in zip(progress, progress[1:])) and progress[0] >= progress_before
    job = api.db.ProcessingJob.find_one({"_id": job_id})
    assert job["state"] == "done" and job["attempts"] == 2
    assert snapshot(api.db, tmp_path / "crash-store", upload_id) == expected
    assert not list((tmp_path / "tasks").rglob("*.mp4"))  # no scratch left


def test_two_worker_processes_run_every_job_exactly_once(make_service, mongo_uri, tmp_path):
    api = make_service(APP_RUN_WORKERS="false", CONTENT_FRAMES_PER_TASK="5")
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongo_db_name, CONTENT_FRAMES_PER_TASK="5")
    workers = [start_worker(env, tmp_path / f"w{i}.log") for i in range(2)]
    uploads = []
    try:
        for i in range(6):
            make_video(api.content / "uploads" / f"c{i}.mp4", 30 + i, 25)
            upload_id, project_id = ObjectId(), ObjectId()
            queue(api, upload_id, project_id, f"c{i}.mp4", frame_rate=5)
            uploads.append((upload_id, 30 + i))
        for upload_id, frames in uploads:
            assert wait_for_upload(api.db, upload_id)["status"] == 1
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    jobs = list(api.db.ProcessingJob.find({}))
    assert len(jobs) == 6 and all(j["state"] == "done" and j["attempts"] == 1 for j in jobs)
    owners = {j["lease_owner"] for j in jobs}
    assert owners == {None}
    for upload_id, frames in uploads:
        tasks = list(api.db.AnnotationTask.find({"uploadId": upload_id}))
        numbers = sorted(n for t in tasks for n in t["original_frames"])
        assert numbers == list(range(1, frames + 1, 5))  # every sample once, no duplicate task
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert logs.count("started (attempt 1/3") == 6


def test_warm_start_resumes_and_second_run_changes_nothing(make_service, mongo_uri, tmp_path):
    api = make_service(APP_RUN_WORKERS="false")
    make_video(api.content / "uploads" / "boot.mp4", 20, 25)
    upload_id = ObjectId()
    queue(api, upload_id, ObjectId(), "boot.mp4", frame_rate=5)
    # As after a crash: the job left "running" under a lease that has expired.
    api.db.ProcessingJob.update_one({"_id": f"content:{upload_id}"}, {"$set": {
        "state": "running", "lease_owner": "dead-host:1:0", "lease_expires": api.db.ProcessingJob.find_one(
            {"_id": f"content:{upload_id}"})["created_at"]}})
    env = {**os.environ, **service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongo_db_name)}
    first = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert wait_for_upload(api.db, upload_id, timeout=5)["status"] == 1
    before = snapshot(api.db, Path(api.settings.storage_url), upload_id)
    jobs_before = list(api.db.ProcessingJob.find({}))
    second = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "nothing to resume" in second.stderr
    assert snapshot(api.db, Path(api.settings.storage_url), upload_id) == before
    assert list(api.db.ProcessingJob.find({})) == jobs_before


def test_cancel_removes_partial_outputs(make_service, tmp_path):
    service = make_service(CONTENT_FRAMES_PER_TASK="2")
    make_video(service.content / "uploads" / "cancel.mp4", 400, 25, size=(640, 480))
    upload_id, project_id = ObjectId(), ObjectId()
    queue(service, upload_id, project_id, "cancel.mp4", frame_rate=25)
    deadline = time.monotonic() + 60
    while service.db.AnnotationTask.count_documents({"uploadId": upload_id}) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    response = post_node(f"{service.url}/api/processContent/cancel",
                         {"upload_id": str(upload_id), "auth_key": "node-platform-key"})
    assert response.status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 499
    assert service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["state"] == "cancelled"
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0
    assert service.db.AnnotationFrame.count_documents({}) == 0
    assert not list(Path(service.settings.storage_url).rglob("*.mp4"))
