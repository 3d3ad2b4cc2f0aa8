"""A cancel stops the job on whichever worker process holds it, at any point of the run, and removes
what it made. The API answers in one process; the job runs in a `worker.py` of its own, held at a
chosen checkpoint (tests/held_worker.py) while the cancel arrives, so no test races the job."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests
from bson import ObjectId

from tests.conftest import NODE_KEY, service_env
from tests.faces import make_face_clip
from tests.held_worker import HeldWorker
from tests.helpers import post_node, wait_for, wait_for_upload
from tests.media import make_video
from tests.test_annotation import project_with_labels, request
from tests.test_datasets import create, make_version, wait_built
from tests.test_jobs import queue

# Only the checkpoint (and the job's last look before it ends) may notice the cancel: a heartbeat
# longer than any of these runs keeps it from being noticed by chance.
SLOW_HEARTBEAT = {"JOBS_HEARTBEAT_SECONDS": "60", "JOBS_LEASE_SECONDS": "180"}


def worker_env(api, mongo_uri: str, tmp_path: Path, **extra: str) -> dict:
    return service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                       STORAGE_URL=api.settings.storage.url, **SLOW_HEARTBEAT, **extra)


def cancel_upload(api, upload_id) -> requests.Response:
    return post_node(f"{api.url}/api/processContent/cancel", {"upload_id": str(upload_id), "auth_key": NODE_KEY})


def stored_videos(api) -> list[Path]:
    return sorted(Path(api.settings.storage.url).rglob("*.mp4"))


# Where a run can be when the cancel comes: the hold points of tests/held_worker.py. "end" is the
# job's last look for a cancel before it publishes its end; after it only the finish can notice.
LAST_LOOK, AFTER_LAST_LOOK = ("end", "before"), ("end", "after")


# A 2 s clip sampled at 10 fps, 4 frames a task: 5 tasks. Checkpoint 1 is the start, n+1 follows task n.
@pytest.mark.parametrize("point,at,when", [("first task", 2, "before"), ("middle", 3, "before"),
                                           ("during the last commit", 6, "after"),
                                           ("after the last look", *AFTER_LAST_LOOK)])
def test_a_content_job_cancelled_on_another_worker_stops_and_leaves_nothing(make_service, mongo_uri, tmp_path,
                                                                            point, at, when):
    api = make_service(APP_RUN_WORKERS="false", CONTENT_FRAMES_PER_TASK="4", STORAGE_URL=str(tmp_path / "store"))
    make_video(api.content / "uploads" / "five.mp4", 50, 25, size=(320, 240))
    upload_id, project_id = ObjectId(), ObjectId()
    queue(api, upload_id, project_id, "five.mp4", frame_rate=10)
    job_id = f"content:{upload_id}"
    worker = HeldWorker(worker_env(api, mongo_uri, tmp_path), tmp_path / "hold", at, when)
    try:
        worker.wait_held(api.db, job_id)
        committed = api.db.AnnotationTask.count_documents({"uploadId": upload_id})
        assert committed == (5 if at == "end" else at - 1)  # where the run was when the cancel came
        answer = cancel_upload(api, upload_id)
        assert answer.status_code == 202 and "stopping" in answer.json()["message"]
        worker.release()
        upload = wait_for_upload(api.db, upload_id)
    finally:
        worker.stop()
    job = api.db.ProcessingJob.find_one({"_id": job_id})
    assert job["state"] == "cancelled", (point, job)
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 499
    assert api.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0
    assert api.db.AnnotationFrame.count_documents({}) == 0
    assert stored_videos(api) == []
    assert "cancelled; its outputs were removed" in worker.log.read_text()
    # Once ended, a second cancel changes nothing and says why.
    again = cancel_upload(api, upload_id)
    assert again.status_code == 409 and again.json()["state"] == "cancelled"


@pytest.mark.parametrize("at,when,versions", [(3, "before", [1, 1, 0, 0]), (*AFTER_LAST_LOOK, [1, 1, 1, 1])])
def test_an_annotation_job_cancelled_on_another_worker_stops_at_the_next_task(make_service, mongo_uri, tmp_path,
                                                                             at, when, versions):
    api = make_service(APP_RUN_WORKERS="false")
    make_face_clip(api.content / "faces.mp4", frames=40, audio=False)
    project_id = project_with_labels(api.db, "Face", "Person")
    api.services.start_workers()  # the tasks to annotate, cut first (4 tasks of 10 frames)
    cut, answer = request(api, project_id, "./faces.mp4", 0, 0, frame_rate=25)
    assert answer.status_code == 202 and wait_for_upload(api.db, cut)["status"] == 1
    api.services.pool.shutdown(grace=5)
    api.services.pool = None
    upload_id, answer = request(api, project_id, "./faces.mp4", 2, 1, frame_rate=25)
    assert answer.status_code == 202
    worker = HeldWorker(worker_env(api, mongo_uri, tmp_path), tmp_path / "hold", at, when)  # 3: 2 of 4 tasks done
    try:
        worker.wait_held(api.db, f"content:{upload_id}")
        assert cancel_upload(api, upload_id).status_code == 202
        worker.release()
        upload = wait_for_upload(api.db, upload_id, timeout=300)
    finally:
        worker.stop()
    assert api.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["state"] == "cancelled"
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 499
    # Whole tasks keep their boxes (as after a failure); the rest were never started.
    assert [t.get("AutoAnnotationVersion") for t in api.db.AnnotationTask.find({"projectId": project_id})
            .sort("frameStart", 1)] == versions


@pytest.mark.parametrize("at,when", [(1, "before"), LAST_LOOK, AFTER_LAST_LOOK])
def test_a_dataset_build_cancelled_on_another_worker_ends_cancelled_not_complete(make_service, mongo_uri, tmp_path,
                                                                                 at, when):
    api = make_service(APP_RUN_WORKERS="false")
    version = make_version(api, frames=20, per_task=10)
    assert create(api, version.id).status_code == 201
    job_id = f"dataset:{version.id}"
    worker = HeldWorker(worker_env(api, mongo_uri, tmp_path), tmp_path / "hold", at, when)
    try:
        worker.wait_held(api.db, job_id)
        cancel = requests.post(f"{api.url}/api/jobs/{job_id}/cancel", headers={"X-API-Key": NODE_KEY}, timeout=30)
        assert cancel.status_code == 202, cancel.text
        worker.release()
        job = wait_built(api, version.id)
    finally:
        worker.stop()
    assert job["state"] == "cancelled"
    doc = api.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    assert doc["taskStatus"]["state"] == "failed" and "cancelled" in doc["taskStatus"]["error"]


@pytest.mark.parametrize("at,when", [(1, "before"), LAST_LOOK, AFTER_LAST_LOOK])
def test_a_privacy_job_cancelled_on_another_worker_answers_once_stopped_past_the_database_deadline(
        make_service, mongo_uri, tmp_path, at, when):
    """The route waits for the job to stop (up to 30 s) with its own deadline, not the request's
    database deadline (`[MongoDB] timeout_seconds`, here 1 s), which once made it answer 503."""
    videos = tmp_path / "videos"
    make_face_clip(videos / "held.mp4", frames=60, audio=False)
    api = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(videos), MONGODB_TIMEOUT_SECONDS="1")
    assert requests.post(f"{api.url}/process_video", data=b"held.mp4").status_code == 202
    env = worker_env(api, mongo_uri, tmp_path, PRIVACYPAL_VIDEO_DIRECTORY=str(videos))
    worker = HeldWorker(env, tmp_path / "hold", at, when)
    answers: list = []
    try:
        worker.wait_held(api.db, "privacy:held.mp4")
        asking = threading.Thread(target=lambda: answers.append(
            requests.post(f"{api.url}/cancel_process", data=b"held.mp4", timeout=60)))
        asking.start()
        # The job stays held while the cancel waits, well past the 1 s database deadline.
        wait_for(lambda: api.db.ProcessingJob.find_one({"_id": "privacy:held.mp4"}).get("cancel_requested"),
                 what="the cancel request on the job")
        time.sleep(2.5)
        worker.release()
        asking.join(90)
    finally:
        worker.stop()
    assert (answers[0].status_code, answers[0].text) == (200, "Success")
    assert sorted(p.name for p in videos.iterdir()) == ["held.mp4"]
    state = requests.get(f"{api.url}/process_status", params={"filename": "held.mp4", "format": "json"}).json()
    assert state["state"] == "cancelled"
    plain = requests.get(f"{api.url}/process_status", params={"filename": "held.mp4"})
    assert (plain.status_code, plain.text) == (404, "Error: cancelled")


def test_a_database_call_past_its_deadline_is_reported_as_slow_not_as_an_outage(make_service):
    """fsyncLock makes the server hold every write while it answers everything else: the cancel's
    write passes the 1 s deadline on a server that is up."""
    api = make_service(APP_RUN_WORKERS="false", MONGODB_TIMEOUT_SECONDS="1")
    make_video(api.content / "uploads" / "slow.mp4", 10, 25, size=(160, 120))
    upload_id = ObjectId()
    queue(api, upload_id, ObjectId(), "slow.mp4")
    admin = api.services.mongo.client.admin
    admin.command("fsync", lock=True)
    try:
        answer = cancel_upload(api, upload_id)
    finally:
        admin.command("fsyncUnlock")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert "took longer than its 1 s deadline" in answer.json()["message"]
    assert requests.get(f"{api.url}/api/ready", timeout=10).status_code == 200  # no outage meanwhile
