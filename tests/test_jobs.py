"""Durable jobs: kill -9 and resume, several processes on one database, warm start (issue 4)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from bson import ObjectId

from media_service.embedded_mongo import EmbeddedMongo
from tests.conftest import ROOT, service_env
from tests.held_worker import HeldWorker
from tests.helpers import (
    fields_for,
    free_port,
    new_upload,
    post,
    post_node,
    wait_for,
    wait_for_job,
    wait_for_upload,
    wait_until_ready,
)
from tests.media import decode_frames, make_video, read_number
from tests.s3_server import BUCKET, S3_PORT, HoldingProxy, s3_objects

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


def frame_numbers(video: Path) -> list[int]:
    return [read_number(f) for f in decode_frames(video)]


def snapshot(db, storage_root: Path | None, upload_id, objects: dict | None = None, key_prefix: str = "") -> dict:
    """What an uninterrupted run must leave: docs (minus ids and times) and stored objects
    (the frame numbers each stored video shows; from `storage_root`, or `objects` when given).
    `key_prefix`: the storage's prefix, which every stored key must carry (and is compared without)."""
    tasks = list(db.AnnotationTask.find({"uploadId": upload_id}).sort("taskName", 1))
    for task in tasks:
        assert task["S3_url"].startswith(key_prefix), task["S3_url"]
        task["S3_url"] = task["S3_url"][len(key_prefix):]
    frames = {t["taskName"]: sorted((f["frameId"], f["isEmpty"]) for f in db.AnnotationFrame.find({"taskId": t["_id"]}))
              for t in tasks}
    ignored = {"_id", "createdAt", "videoPath"}
    if objects is None:
        objects = {str(p.relative_to(storage_root)): frame_numbers(p) for p in sorted(storage_root.rglob("*.mp4"))}
    upload = db.AnnotationContentUpload.find_one({"_id": upload_id})
    return {"tasks": [{k: v for k, v in t.items() if k not in ignored} for t in tasks], "frames": frames,
            "frame_docs": db.AnnotationFrame.count_documents({}), "objects": objects,
            "upload": {k: upload.get(k) for k in ("status", "progress", "taskCount", "errorMessage")}}


@pytest.fixture
def long_clip(tmp_path):
    return make_video(tmp_path / "content" / "uploads" / "long.mp4", 250, 25, size=(480, 360))


@pytest.fixture
def reference(make_service, tmp_path, long_clip):
    """The long clip's request run once, never interrupted: ids and its snapshot."""
    upload_id, project_id = ObjectId(), ObjectId()
    service = make_service(CONTENT_FRAMES_PER_TASK=PER_TASK, STORAGE_URL=str(tmp_path / "ref-store"))
    queue(service, upload_id, project_id, "long.mp4")
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    expected = snapshot(service.db, tmp_path / "ref-store", upload_id)
    assert len(expected["tasks"]) == 17  # 100 samples, 6 a task
    return upload_id, project_id, expected


def crash_setup(make_service, mongo_uri, tmp_path, reference, **env):
    """A fresh database with the reference's request queued, and the env of its worker processes."""
    upload_id, project_id, _ = reference
    env.setdefault("STORAGE_URL", str(tmp_path / "crash-store"))
    api = make_service(APP_RUN_WORKERS="false", CONTENT_FRAMES_PER_TASK=PER_TASK, STORAGE_URL=env["STORAGE_URL"])
    worker_env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                             CONTENT_FRAMES_PER_TASK=PER_TASK, JOBS_LEASE_SECONDS="2",
                             JOBS_HEARTBEAT_SECONDS="0.5", **env)
    queue(api, upload_id, project_id, "long.mp4")
    return api, worker_env


def finish_with_second_worker(api, env, tmp_path, upload_id, reference_snapshot, attempts: int,
                              stored=None, key_prefix: str = "") -> None:
    """Another worker takes the job over; progress never goes back; the end is the reference's."""
    progress_before = api.db.AnnotationContentUpload.find_one({"_id": upload_id}).get("progress", 0)
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
    job = api.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert job["state"] == "done" and job["attempts"] == attempts
    objects = stored() if stored else None
    assert snapshot(api.db, tmp_path / "crash-store", upload_id, objects, key_prefix) == reference_snapshot
    assert not list((tmp_path / "tasks").rglob("*.mp4"))  # no scratch left


@pytest.mark.parametrize("kill_after_tasks", [0, 1, 3])
def test_kill_9_then_restart_ends_like_an_uninterrupted_run(make_service, mongo_uri, tmp_path, reference,
                                                            kill_after_tasks):
    upload_id, _, expected = reference
    api, env = crash_setup(make_service, mongo_uri, tmp_path, reference)
    job_id = f"content:{upload_id}"
    # Checkpoint 1 is the run's start, n+1 follows task n: held once that many tasks are committed.
    victim = HeldWorker(env, tmp_path / "hold", at=kill_after_tasks + 1, when="after")
    try:
        victim.wait_held(api.db, job_id)
        assert api.db.ProcessingJob.find_one({"_id": job_id})["checkpoint"]["next_task"] == kill_after_tasks
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
    finally:
        victim.stop()
    assert api.db.ProcessingJob.find_one({"_id": job_id})["state"] == "running"  # left behind
    finish_with_second_worker(api, env, tmp_path, upload_id, expected, attempts=2)


def test_sigterm_stops_at_a_commit_and_releases_the_job(make_service, mongo_uri, tmp_path, reference):
    upload_id, _, expected = reference
    api, env = crash_setup(make_service, mongo_uri, tmp_path, reference, JOBS_SHUTDOWN_GRACE_SECONDS="20")
    job_id = f"content:{upload_id}"
    worker = HeldWorker(env, tmp_path / "hold", at=3)  # held with 2 tasks committed, the 3rd checkpoint not saved
    try:
        worker.wait_held(api.db, job_id)
        worker.process.send_signal(signal.SIGTERM)
        # The worker has seen the signal before the job goes on.
        wait_for(lambda: "stopping: running jobs stop at their next commit" in worker.log.read_text(),
                 what=lambda: f"the worker to log that it is stopping: {worker.log.read_text()[-2000:]}")
        worker.release()
        assert worker.process.wait(60) == 0
    finally:
        worker.stop()
    job = api.db.ProcessingJob.find_one({"_id": job_id})
    # Handed back at that commit for another worker: not failed, no attempt spent, no lease held.
    assert job["state"] == "queued" and job["stage"] == "released"
    assert job["attempts"] == 0 and job["lease_owner"] is None
    assert job["checkpoint"]["next_task"] == 2
    assert api.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 2
    assert not list((tmp_path / "tasks").rglob("*.mp4"))  # the unfinished task's scratch is gone
    assert "handed back for shutdown" in worker.log.read_text()
    finish_with_second_worker(api, env, tmp_path, upload_id, expected, attempts=1)


def test_kill_9_during_an_s3_upload_then_restart_ends_like_an_uninterrupted_run(
        make_service, mongo_uri, tmp_path, reference, s3_server):
    upload_id, _, expected = reference
    prefix = f"crash-{upload_id}"
    s3 = {"STORAGE_URL": f"s3://{BUCKET}/{prefix}", "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test-secret"}
    proxy = HoldingProxy(b"/task-3-long.mp4")
    try:
        api, env = crash_setup(make_service, mongo_uri, tmp_path, reference, **s3,
                               S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}")
        victim = start_worker(env, tmp_path / "worker1.log")
        assert proxy.holding.wait(120), "the upload of task 3 never started"
        victim.send_signal(signal.SIGKILL)  # task 3's video is half-sent
        victim.wait()
    finally:
        proxy.close()
    assert api.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["checkpoint"]["next_task"] == 3
    direct = {**env, "S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}"}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    finish_with_second_worker(api, direct, tmp_path, upload_id, expected, attempts=2,
                              stored=lambda: s3_objects(s3_server, f"{prefix}/", downloads, frame_numbers),
                              key_prefix=f"{prefix}/")


def test_two_worker_processes_run_every_job_exactly_once(make_service, mongo_uri, tmp_path):
    api = make_service(APP_RUN_WORKERS="false", CONTENT_FRAMES_PER_TASK="5")
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name, CONTENT_FRAMES_PER_TASK="5")
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
    env = {**os.environ, **service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name)}
    first = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert wait_for_upload(api.db, upload_id, timeout=5)["status"] == 1
    before = snapshot(api.db, Path(api.settings.storage.url), upload_id)
    jobs_before = list(api.db.ProcessingJob.find({}))
    second = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "nothing to resume" in second.stderr
    assert snapshot(api.db, Path(api.settings.storage.url), upload_id) == before
    assert list(api.db.ProcessingJob.find({})) == jobs_before


def test_a_job_failing_every_attempt_is_retried_then_ends_as_status_2(make_service, tmp_path):
    dead_s3 = f"http://127.0.0.1:{free_port()}"  # nothing listens: every upload fails to connect
    service = make_service(STORAGE_URL="s3://tasks-bucket", S3_ENDPOINT_URL=dead_s3, S3_ACCESS_KEY_ID="k",
                           S3_SECRET_ACCESS_KEY="s", S3_UPLOAD_ATTEMPTS="1", JOBS_MAX_ATTEMPTS="3",
                           JOBS_RETRY_BACKOFF_SECONDS="0.3")
    make_video(service.content / "uploads" / "retry.mp4", 10, 25)
    upload_id, project_id = ObjectId(), ObjectId()
    queue(service, upload_id, project_id, "retry.mp4", frame_rate=5)
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 500
    assert "Could not connect" in upload["errorMessage"]["message"]
    job = service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert job["state"] == "failed" and job["attempts"] == 3 and "Could not connect" in job["last_error"]
    # Each failed attempt but the last was retried after a doubling wait (0.3 s, then 0.6 s), and the
    # next attempt started only when its wait was over: backoff, not a hot loop.
    waits = [(h["retry_at"] - h["failed_at"]).total_seconds() for h in job["history"]]
    assert waits == [0.3, 0.6]
    assert job["started_at"] >= job["history"][-1]["retry_at"]
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0


def test_warm_start_while_the_service_runs_a_job_leaves_it_to_the_service(make_service, mongo_uri, tmp_path,
                                                                        long_clip):
    """The service's worker is held mid-job (its heartbeat keeps the lease alive) while the warm start
    makes the unfinished jobs due and starts its own workers; released, it finishes the job itself."""
    api = make_service(APP_RUN_WORKERS="false", CONTENT_FRAMES_PER_TASK=PER_TASK)
    upload_id = ObjectId()
    queue(api, upload_id, ObjectId(), "long.mp4")
    job_id = f"content:{upload_id}"
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                      CONTENT_FRAMES_PER_TASK=PER_TASK, STORAGE_URL=api.settings.storage.url)
    service_worker = HeldWorker(env, tmp_path / "hold", at=2, when="after")  # task 0 committed
    warm_log = tmp_path / "warm.log"
    try:
        service_worker.wait_held(api.db, job_id)
        warm = subprocess.Popen([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT,
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=open(warm_log, "w"))
        wait_for(lambda: "worker pool started" in warm_log.read_text() or warm.poll() is not None,
                 what=lambda: f"the warm start's workers to start: {warm_log.read_text()[-2000:]}")
        assert f"1 unfinished jobs: {job_id}" in warm_log.read_text()
        service_worker.release()
        assert warm.wait(300) == 0, warm_log.read_text()[-2000:]  # it waits for the job to end
    finally:
        service_worker.stop()
    job = api.db.ProcessingJob.find_one({"_id": job_id})
    # The service's worker finished it (its lease was alive): claimed once, never taken over.
    assert job["state"] == "done" and job["attempts"] == 1
    assert "started (attempt" not in warm_log.read_text()
    assert "done" in service_worker.log.read_text()
    assert len(api.db.AnnotationTask.distinct("taskName", {"uploadId": upload_id})) == 17
    assert api.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 17


def test_writes_wait_for_the_journal_unless_the_uri_says_otherwise(mongo_uri):
    """Found by the test below: after kill -9 of mongod the checkpoint read just before was gone
    (unjournaled writes of the last 100 ms are lost). Every write now waits for the journal."""
    from mongo_manager import connect

    journaled = connect(mongo_uri, "t_journal")
    assert journaled.db.write_concern.document.get("j") is True
    journaled.db.probe.insert_one({"ok": 1})  # a server accepts it
    journaled.db.probe.drop()
    journaled.client.close()
    operator = connect(mongo_uri + ("&" if "?" in mongo_uri else "/?") + "journal=false", "t_journal")
    assert operator.db.write_concern.document.get("j") is False
    operator.client.close()


def test_kill_9_of_service_and_database_then_run_sh_resumes_on_the_same_data(tmp_path, reference):
    """A crash of the whole machine under the embedded default: the service and its mongod both
    die by kill -9 mid-job. `./run.sh` again brings the server back on the same data (journal
    recovery, stale mongod.lock), the warm start makes the job due, and the end is the reference's."""
    from tests.test_embedded_mongo import LOCAL_KEY, embedded_env, node_client, server_record

    upload_id, project_id, expected = reference
    env = embedded_env(tmp_path, CONTENT_FRAMES_PER_TASK=PER_TASK, JOBS_LEASE_SECONDS="2",
                       JOBS_HEARTBEAT_SECONDS="0.5", STORAGE_URL=str(tmp_path / "crash-store"))
    log = tmp_path / "run.log"
    service = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "a"))
    with node_client(env) as node:
        db = node["annotation_platform"]
        try:
            wait_until_ready(f"http://127.0.0.1:{env['PORT']}", service, timeout=300)
            db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": []})
            db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0,
                                                   "progress": 0})
            fields = fields_for(upload_id, project_id, "./uploads/long.mp4", auth_key=LOCAL_KEY, frame_rate=10)
            assert post_node(f"http://127.0.0.1:{env['PORT']}/api/processContent", fields).status_code == 202
            wait_for_job(db, f"content:{upload_id}", lambda job: job.get("checkpoint", {}).get("next_task", 0) >= 3)
            mongod = server_record(tmp_path / "data")["pid"]
            os.kill(mongod, signal.SIGKILL)
            service.send_signal(signal.SIGKILL)
            service.wait()
            wait_for(lambda: not Path(f"/proc/{mongod}").exists(), what=f"the killed mongod {mongod} to be gone")
        finally:
            if service.poll() is None:
                service.kill()
        assert (tmp_path / "data" / "mongo" / "mongod.lock").read_text().strip()  # stale: not cleanly stopped
        assert json.loads((tmp_path / "data" / "mongod.port").read_text())["pid"] == mongod

        service = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "a"))
        try:
            wait_until_ready(f"http://127.0.0.1:{env['PORT']}", service, timeout=300)
            job = db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
            assert job["state"] in ("running", "done") and job["checkpoint"]["next_task"] >= 3  # data survived
            warm = subprocess.run([sys.executable, "dataset_creation_warm_start.py", "--no-run"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert warm.returncode == 0, warm.stderr
            assert wait_for_upload(db, upload_id)["status"] == 1
            assert snapshot(db, tmp_path / "crash-store", upload_id) == expected
            assert db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["attempts"] == 2
        finally:
            service.terminate()
            assert service.wait(60) == 0
    assert "Detected unclean shutdown" in (tmp_path / "data" / "mongod.log").read_text()


@pytest.fixture
def own_mongo(tmp_path):
    """A MongoDB server of this test's own, which the test stops and starts again."""
    server = EmbeddedMongo(tmp_path / "own-db", port=free_port())
    server.start()
    yield server
    server.stop()


def test_an_outage_ends_every_job_without_a_restart_and_answers_503_meanwhile(make_service, own_mongo, tmp_path):
    service = make_service(MONGO_URI=own_mongo.uri, MONGODB_TIMEOUT_SECONDS="1", JOBS_LEASE_SECONDS="3",
                           JOBS_HEARTBEAT_SECONDS="0.5", CONTENT_FRAMES_PER_TASK="3")
    uploads = []
    for name in ("a.mp4", "b.mp4"):
        make_video(service.content / name, 500, 25, size=(480, 360))
        upload_id, project_id = new_upload(service.db, f"./{name}", frames_per_task=3)
        assert post(service, fields_for(upload_id, project_id, f"./{name}", frame_rate=25)).status_code == 202
        uploads.append(upload_id)
    wait_for(lambda: service.db.ProcessingJob.count_documents({"state": "running",
                                                               "checkpoint.next_task": {"$gte": 2}}))

    own_mongo.stop()  # the database goes away while both jobs run
    started = time.monotonic()
    ready = requests.get(f"{service.url}/api/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["mongodb"] == "unreachable"
    refused = post(service, fields_for(ObjectId(), ObjectId(), "./a.mp4"))
    assert refused.status_code == 503 and refused.json()["status"] == 503
    assert time.monotonic() - started < 6  # within a couple of seconds each, not pymongo's 30
    time.sleep(6)  # longer than a lease: workers' closing writes fail meanwhile
    own_mongo.start()

    assert requests.get(f"{service.url}/api/ready", timeout=10).json()["workers"] == "2 of 2 alive"
    for upload_id in uploads:
        assert wait_for_upload(service.db, upload_id, timeout=120)["status"] == 1
    # A new upload after the outage is taken too: the pool kept all its threads.
    make_video(service.content / "c.mp4", 20, 25)
    upload_id, project_id = new_upload(service.db, "./c.mp4", frames_per_task=3)
    assert post(service, fields_for(upload_id, project_id, "./c.mp4")).status_code == 202
    assert wait_for_upload(service.db, upload_id, timeout=60)["status"] == 1
    assert requests.get(f"{service.url}/api/ready", timeout=10).status_code == 200


def test_a_long_job_of_one_kind_never_starves_another(make_service, mongo_uri, tmp_path):
    """A blur holds one of the worker's two threads (held mid-way) and a second blur is queued: an
    upload queued after them is cut meanwhile ([Jobs] limits keeps a thread for the other kinds), and
    the second blur waits for the first ([Jobs] limits privacy: 1), not the upload for the blurs."""
    import requests

    from tests.faces import make_face_clip

    videos = tmp_path / "videos"
    for name in ("long-a.mp4", "long-b.mp4"):
        make_face_clip(videos / name, frames=20, audio=False)
    api = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(videos))
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                      PRIVACYPAL_VIDEO_DIRECTORY=str(videos), STORAGE_URL=api.settings.storage.url)
    assert requests.post(f"{api.url}/process_video", data=b"long-a.mp4", timeout=10).status_code == 202
    worker = HeldWorker(env, tmp_path / "hold", at=1, when="after")  # its first progress saved
    try:
        worker.wait_held(api.db, "privacy:long-a.mp4")
        assert requests.post(f"{api.url}/process_video", data=b"long-b.mp4", timeout=10).status_code == 202
        make_video(api.content / "uploads" / "urgent.mp4", 20, 25)
        upload_id = ObjectId()
        queue(api, upload_id, ObjectId(), "urgent.mp4", frame_rate=5)
        assert wait_for_upload(api.db, upload_id)["status"] == 1
        blur = {job["_id"]: job["state"] for job in api.db.ProcessingJob.find({"kind": "privacy"})}
        assert blur == {"privacy:long-a.mp4": "running", "privacy:long-b.mp4": "queued"}
        worker.release()
        assert wait_for_job(api.db, "privacy:long-b.mp4", timeout=300)["state"] == "done"
    finally:
        worker.stop()
    assert api.db.ProcessingJob.find_one({"_id": "privacy:long-a.mp4"})["state"] == "done"


def test_warm_start_sends_again_what_node_sent_while_the_service_was_down(make_service, mongo_uri, tmp_path):
    """Uploads Node left at status 0 with no job (its request never arrived) are sent again from the
    parameters on the upload doc, once older than [Jobs] warm_start_min_age_seconds; a newer one
    and one that has a job are left alone; a bad one gets its rejection recorded; never twice."""
    from datetime import timedelta

    from mongo_manager import utcnow

    api = make_service(APP_RUN_WORKERS="false")
    db = api.db
    make_video(api.content / "uploads" / "missed.mp4", 20, 25)
    hour_ago, now = utcnow() - timedelta(hours=1), utcnow()

    def node_upload(path: str, created, **fields) -> ObjectId:
        upload_id, project_id = ObjectId(), ObjectId()
        db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": []})
        db.AnnotationContentUpload.insert_one({
            "_id": upload_id, "projectId": project_id, "sourceFilePath": path, "createdAt": created, "status": 0,
            "progress": 0, "frame_rate": 5, "frames_per_task": 3, "content_type": 1, "force_write": 0,
            "request_type": 0, "request_annotation_version": 0, **fields})
        return upload_id

    missed = node_upload("./uploads/missed.mp4", hour_ago)
    recent = node_upload("./uploads/missed.mp4", now)          # Node may still be sending it
    outside = node_upload("../../etc/passwd", hour_ago)         # refused, and recorded as such
    queued = ObjectId()
    queue(api, queued, ObjectId(), "missed.mp4", frame_rate=5)  # has its job already
    db.AnnotationContentUpload.update_one({"_id": queued}, {"$set": {"createdAt": hour_ago}})
    env = {**os.environ, **service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                                       JOBS_WARM_START_MIN_AGE_SECONDS="600")}
    first = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert f"upload {missed} was left at status 0" in first.stderr and str(recent) not in first.stderr
    upload = db.AnnotationContentUpload.find_one({"_id": missed})
    assert upload["status"] == 1 and upload["taskCount"] == 2  # 20 frames at 25 fps, 5 fps: 4 frames, 3 a task
    assert [t["original_frames"] for t in db.AnnotationTask.find({"uploadId": missed}).sort("frameStart", 1)] == \
        [[1, 6, 11], [16]]
    assert db.AnnotationContentUpload.find_one({"_id": recent})["status"] == 0
    assert db.ProcessingJob.find_one({"_id": f"content:{recent}"}) is None
    refused = db.AnnotationContentUpload.find_one({"_id": outside})
    assert refused["status"] == 2 and refused["errorMessage"]["error_code"] == 400
    assert db.AnnotationContentUpload.find_one({"_id": queued})["status"] == 1  # its own job ran, once
    jobs = list(db.ProcessingJob.find({}))
    second = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "was left at status 0" not in second.stderr
    assert list(db.ProcessingJob.find({})) == jobs
