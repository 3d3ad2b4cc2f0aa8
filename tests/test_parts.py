"""One long video cut by many workers (issue 31): parts planned from the packets' timestamps give
the same frames, documents and objects as one job; one outcome for the upload whatever its parts
meet (a kill -9, a cancel, a part failing for good); other uploads are not starved."""
from __future__ import annotations

import subprocess
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from bson import ObjectId

import video_processor as vp
from tests.conftest import NODE_KEY, service_env
from tests.held_worker import HeldWorker, finish_with_another_worker
from tests.helpers import fields_for, post_node, wait_for, wait_for_upload
from tests.media import make_video
from tests.test_jobs import queue, snapshot

PER_TASK, PER_PART = 6, 2  # 250 frames at 25 fps sampled at 10 fps: 100 frames, 17 tasks, 9 parts


@pytest.fixture
def long_clip(tmp_path):
    return make_video(tmp_path / "content" / "uploads" / "long.mp4", 250, 25, size=(320, 240), keyframe_every=20)


def decoded(path: Path, info: vp.MediaInfo, part: vp.Part | None = None) -> list[tuple[int, np.ndarray]]:
    """(number, grey picture) of the frames sampled at 5 fps: the whole file, or one part alone."""
    use = part.media_info(info) if part else info
    sampler = vp.Sampler(5, "timestamp", use.average_fps)
    start = part.start if part else None
    if start:
        sampler.resume_from(start)
    found = []
    with closing(vp.decode_samples(path, sampler, use, start)) as samples:
        for sample, _ in samples:
            found.append((sample.number, sample.frame.to_ndarray(format="gray")))
            if part and sample.number >= part.last_number:
                break
    return found


@pytest.mark.parametrize("kind", ["b-frames, short GOP", "variable frame rate"])
def test_each_part_decodes_exactly_the_frames_a_whole_decode_samples(tmp_path, kind):
    path = tmp_path / "clip.mp4"
    if kind == "variable frame rate":
        times = np.cumsum(np.where(np.arange(300) % 7 == 0, 0.09, 0.03)).tolist()
        make_video(path, 300, 30, times=times, keyframe_every=25)
    else:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:d=20",
                        "-c:v", "libx264", "-preset", "veryfast", "-g", "40", "-bf", "3", "-pix_fmt", "yuv420p",
                        str(path)], check=True)
    info = vp.probe_video(path, 9999, 9999)
    assert vp.splittable(info) is None
    parts = vp.plan_parts(info, 5, 6, 2)
    assert len(parts) > 3 and [p.first_task for p in parts] == [2 * i for i in range(len(parts))]
    whole = decoded(path, info)
    by_parts = [frame for part in parts for frame in decoded(path, info, part)]
    assert [n for n, _ in by_parts] == [n for n, _ in whole]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(by_parts, whole))


def test_an_avi_is_not_split_and_the_log_says_why(tmp_path):
    path = tmp_path / "clip.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:d=4",
                    "-c:v", "mpeg4", str(path)], check=True)
    assert "timestamps cannot plan a decode" in vp.splittable(vp.probe_video(path, 9999, 9999))


def parts_env(**extra) -> dict:
    return {"CONTENT_FRAMES_PER_TASK": str(PER_TASK), "CONTENT_TASKS_PER_PART": str(PER_PART), **extra}


def reference_run(make_service, tmp_path, upload_id, project_id, **env) -> dict:
    """The clip cut by one job (parts off): its snapshot."""
    service = make_service(CONTENT_FRAMES_PER_TASK=str(PER_TASK), CONTENT_TASKS_PER_PART="0",
                           STORAGE_URL=str(tmp_path / "ref-store"), **env)
    queue(service, upload_id, project_id, "long.mp4")
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    assert service.db.ProcessingJob.count_documents({"parent": f"content:{upload_id}"}) == 0
    return snapshot(service.db, tmp_path / "ref-store", upload_id)


def test_parts_end_with_the_documents_and_objects_of_one_job(make_service, tmp_path, long_clip):
    upload_id, project_id = ObjectId(), ObjectId()
    expected = reference_run(make_service, tmp_path, upload_id, project_id)
    service = make_service(STORAGE_URL=str(tmp_path / "store"), CORES_WORKER_THREADS="3", **parts_env())
    queue(service, upload_id, project_id, "long.mp4")
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 1, upload.get("errorMessage")
    parts = list(service.db.ProcessingJob.find({"parent": f"content:{upload_id}"}).sort("rank", 1))
    assert len(parts) == 9 and all(part["state"] == "done" for part in parts)
    assert snapshot(service.db, tmp_path / "store", upload_id) == expected
    job = service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert job["state"] == "done" and job["attempts"] == 1 and job["result"]["parts"] == 9
    # force_write: every part's tasks of the first run are replaced, none left twice.
    answer = post_node(f"{service.url}/api/processContent",
                       fields_for(upload_id, project_id, "./uploads/long.mp4", frame_rate=10, force_write=1))
    assert answer.status_code == 202, answer.text
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    assert snapshot(service.db, tmp_path / "store", upload_id) == expected


def test_on_s3_parts_store_the_objects_one_job_stores(make_service, tmp_path, long_clip, s3_server):
    from tests.s3_server import BUCKET, S3_PORT, s3_objects
    from tests.test_jobs import frame_numbers

    s3 = {"S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test-secret", "S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}"}
    results = {}
    upload_id, project_id = ObjectId(), ObjectId()  # the same in both databases: the same keys
    for name, per_part in (("one-job", "0"), ("parts", str(PER_PART))):
        prefix = f"parts-{ObjectId()}"
        service = make_service(STORAGE_URL=f"s3://{BUCKET}/{prefix}", CONTENT_FRAMES_PER_TASK=str(PER_TASK),
                               CONTENT_TASKS_PER_PART=per_part, **s3)
        queue(service, upload_id, project_id, "long.mp4")
        assert wait_for_upload(service.db, upload_id)["status"] == 1
        (tmp_path / name).mkdir()
        objects = s3_objects(s3_server, f"{prefix}/", tmp_path / name, frame_numbers)
        docs = snapshot(service.db, None, upload_id, objects, key_prefix=f"{prefix}/")
        results[name] = (docs, service.db.ProcessingJob.count_documents({"parent": f"content:{upload_id}"}))
    assert results["one-job"][1] == 0 and results["parts"][1] == 9
    assert results["parts"][0] == results["one-job"][0]


def held_parts(make_service, mongo_uri, tmp_path, at: int, when: str = "after"):
    """The long clip queued with parts on an API without workers, and one worker thread held at its
    `at`-th checkpoint (1: the content job's start, 2: its parts queued, 3: part 1's first task)."""
    api = make_service(APP_RUN_WORKERS="false", STORAGE_URL=str(tmp_path / "store"), **parts_env())
    upload_id, project_id = ObjectId(), ObjectId()
    queue(api, upload_id, project_id, "long.mp4")
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                      STORAGE_URL=str(tmp_path / "store"), JOBS_LEASE_SECONDS="2", JOBS_HEARTBEAT_SECONDS="0.5",
                      CORES_CPU_CORES="1", **parts_env())
    worker = HeldWorker(env, tmp_path / "hold", at, when)
    worker.wait_held(api.db, f"content:{upload_id}")
    return api, env, worker, upload_id, project_id


@pytest.mark.parametrize("at", [3, 4], ids=["after its first task", "after its last task"])
def test_a_part_whose_worker_is_killed_resumes_and_ends_as_one_job(make_service, mongo_uri, tmp_path, long_clip, at):
    """Checkpoint 3 is part 1's first task, 4 its last: resumed there, it must cut nothing more."""
    api, env, victim, upload_id, project_id = held_parts(make_service, mongo_uri, tmp_path, at=at)
    try:
        part = api.db.ProcessingJob.find_one({"parent": f"content:{upload_id}", "state": "running"})
        assert part["rank"] == 0 and part["checkpoint"]["next_task"] == at - 2
        if at == 4:  # the upload's row says how far its parts are (held before the second task's report)
            row = api.app.test_client().get(f"/api/jobs/content:{upload_id}", headers={"X-API-Key": NODE_KEY}).json
            assert row["state"] == "queued" and row["stage"] == "parts: 1 of 17 tasks committed", row
            assert row["progress"] == round(100 / 17, 1) and row["eta_seconds"] > 0, row
            assert api.db.AnnotationContentUpload.find_one({"_id": upload_id})["taskCount"] == 1
        victim.kill()
    finally:
        victim.stop()
    finish_with_another_worker(env, tmp_path / "worker2.log", api.db, upload_id)
    assert api.db.ProcessingJob.find_one({"_id": part["_id"]})["attempts"] == 2
    assert snapshot(api.db, tmp_path / "store", upload_id) == reference_run(make_service, tmp_path, upload_id,
                                                                             project_id)


def test_a_cancel_stops_every_part_and_leaves_nothing(make_service, mongo_uri, tmp_path, long_clip):
    api, env, worker, upload_id, _ = held_parts(make_service, mongo_uri, tmp_path, at=3)
    try:
        answer = post_node(f"{api.url}/api/processContent/cancel", fields_for(upload_id, ObjectId(), "x"))
        assert answer.status_code == 202
        assert api.db.ProcessingJob.count_documents({"parent": f"content:{upload_id}", "cancel_requested": True}) == 9
        worker.release()
        upload = wait_for_upload(api.db, upload_id)
        wait_for(lambda: api.db.ProcessingJob.count_documents({"parent": f"content:{upload_id}",
                                                               "state": {"$ne": "cancelled"}}) == 0,
                 what="every part cancelled")
    finally:
        worker.stop()
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 499
    assert api.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0
    assert api.db.AnnotationFrame.count_documents({}) == 0
    assert not list((tmp_path / "store").rglob("*.mp4"))


def test_a_part_that_fails_for_good_fails_the_upload_with_its_error(make_service, mongo_uri, tmp_path, long_clip):
    api, env, worker, upload_id, _ = held_parts(make_service, mongo_uri, tmp_path, at=3)
    try:
        long_clip.touch()  # the source changes under the parts: every part fails, none can be retried
        worker.release()
        upload = wait_for_upload(api.db, upload_id)
    finally:
        worker.stop()
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 422
    assert upload["errorMessage"]["message"].startswith("source_changed: part 1: long.mp4")
    parts = list(api.db.ProcessingJob.find({"parent": f"content:{upload_id}"}))
    assert {part["state"] for part in parts} <= {"failed", "cancelled"}
    assert api.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0
    assert not list((tmp_path / "store").rglob("*.mp4"))


def test_a_short_upload_queued_after_a_long_one_does_not_wait_for_all_its_parts(make_service, mongo_uri, tmp_path,
                                                                                  long_clip):
    api = make_service(APP_RUN_WORKERS="false", STORAGE_URL=str(tmp_path / "store"), **parts_env())
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name, CORES_CPU_CORES="1",
                      STORAGE_URL=str(tmp_path / "store"), **parts_env())
    long_id, short_id = ObjectId(), ObjectId()
    queue(api, long_id, ObjectId(), "long.mp4")
    planner = HeldWorker(env, tmp_path / "hold", at=2, when="after")  # the long upload's parts are queued
    try:
        planner.wait_held(api.db, f"content:{long_id}")
        make_video(api.content / "uploads" / "short.mp4", 20, 25)
        queue(api, short_id, ObjectId(), "short.mp4")
        planner.release()
        short = wait_for_upload(api.db, short_id)
        assert wait_for_upload(api.db, long_id)["status"] == 1
    finally:
        planner.stop()
    assert short["status"] == 1
    started = {job["_id"]: job["started_at"] for job in api.db.ProcessingJob.find({"parent": f"content:{long_id}"})}
    short_started = api.db.ProcessingJob.find_one({"_id": f"content:{short_id}"})["started_at"]
    later = [job_id for job_id, at in started.items() if at > short_started]
    assert len(later) >= len(started) - 1, "the short upload ran after at most one part of the long one"


def test_auto_annotation_in_parts_keeps_one_track_id_per_face_across_part_boundaries(make_service, tmp_path):
    """request_type 1 cut in parts: each part tracks its own frames; a face that crosses into the next
    part keeps its id (the parts are linked at each boundary), as one job gives it one id."""
    from tests.faces import make_face_clip

    make_face_clip(tmp_path / "content" / "uploads" / "faces.mp4", frames=150, size=(640, 360), audio=False)
    ids = {}
    for name, per_part in (("one-job", "0"), ("parts", str(PER_PART))):
        service = make_service(STORAGE_URL=str(tmp_path / name), CONTENT_FRAMES_PER_TASK=str(PER_TASK),
                               CONTENT_TASKS_PER_PART=per_part)
        upload_id, project_id = ObjectId(), ObjectId()
        service.db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": [],
                                                 "labels": [{"label": "face"}]})
        service.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0})
        answer = post_node(f"{service.url}/api/processContent", fields_for(
            upload_id, project_id, "./uploads/faces.mp4", frame_rate=10, request_type=1, auto_anno_version=1))
        assert answer.status_code == 202, answer.text
        upload = wait_for_upload(service.db, upload_id)
        assert upload["status"] == 1 and upload["annotationBoxes"] > 50, upload
        tasks = {t["_id"]: t for t in service.db.AnnotationTask.find({"uploadId": upload_id})}
        frames = sorted(service.db.AnnotationFrame.find({"taskId": {"$in": list(tasks)}}),
                        key=lambda f: (tasks[f["taskId"]]["frameStart"], f["frameId"]))
        ids[name] = [sorted(box["trackId"] for box in frame["boxes"]) for frame in frames]
        parts = service.db.ProcessingJob.count_documents({"parent": f"content:{upload_id}"})
        assert parts == (0 if per_part == "0" else 5)
    distinct = {name: len({i for frame in frames for i in frame}) for name, frames in ids.items()}
    assert distinct["parts"] == distinct["one-job"] == 2, distinct
