"""Adaptive sampling (issue 30): near-duplicate frames of still scenes left out before tasks are cut,
every event kept. End to end through the service on a real mongod; coverage judged against the
people a detector found on every frame of a real fixed camera (tests/still_scenes.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

import video_processor as vp
from tests.conftest import NODE_KEY
from tests.faces import make_face_clip
from tests.held_worker import HeldWorker, finish_with_another_worker
from tests.helpers import fields_for, new_upload, post_node, upload_doc, wait_for_upload
from tests.media import ffprobe_frames, make_video, render_frame
from tests.real_footage import real_clip_people
from tests.still_scenes import Track, coverage, make_still_with_events, people_tracks
from tests.test_jobs import snapshot
from tests.test_operations import metric

EVENTS = [101, 501]  # vtest.avi frames each event starts at: 25 s held, then 5 s of people walking


def kept_frames(path: Path, rate: int, max_gap: float = 2.0) -> tuple[list[int], int]:
    """The frame numbers adaptive sampling keeps, and how many the rate picked (the media package alone)."""
    info = vp.probe_video(path, 9999, 9999)
    sampler = vp.Sampler(rate, "timestamp", info.average_fps)
    judge = vp.NearDuplicates(max_gap)
    kept = [s.number for s, _ in vp.leave_out_near_duplicates(vp.decode_samples(path, sampler, info), judge)]
    assert judge.kept == len(kept) and judge.kept + judge.left_out == sampler.sampled
    return kept, sampler.sampled


def event_tracks(plays: list[int | None]) -> list[Track]:
    """The reference people tracks, cut to the vtest.avi frames the clip plays."""
    shown = {number for number in plays if number}
    tracks = [Track({n: box for n, box in t.frames.items() if n in shown}) for t in people_tracks()]
    return [t for t in tracks if t.frames]


def request(service, upload_id, project_id, path: str, **fields):
    answer = post_node(f"{service.url}/api/processContent", fields_for(upload_id, project_id, path, **fields))
    assert answer.status_code == 202, answer.text
    return wait_for_upload(service.db, upload_id)


def test_a_still_scene_with_events_keeps_every_event_and_few_still_frames(make_service):
    """Through the service: fewer frames than timestamp sampling, every person who walks through
    for a second or more on a kept frame, a frame at least every max_gap seconds; then force_write
    with timestamp sampling replaces the tasks with every sampled frame."""
    service = make_service()
    plays = make_still_with_events(service.content / "street.mp4", EVENTS)
    upload_id, project_id = new_upload(service.db, "./street.mp4", frames_per_task=40)
    upload = request(service, upload_id, project_id, "./street.mp4", sampling_mode="adaptive")
    assert upload["status"] == 1, upload.get("errorMessage")
    sampling = upload["sampling"]
    assert sampling["mode"] == "adaptive" and sampling["sampled"] == 300  # 60 s at 5 fps
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
    kept = [number for task in tasks for number in task["original_frames"]]
    assert len(kept) == sampling["kept"] == upload["taskCount"] * 40 - (-len(kept) % 40)
    assert len(kept) <= 0.4 * sampling["sampled"], sampling  # at least 60% fewer frames
    assert kept == sorted(kept) and all(b - a <= 20 for a, b in zip(kept, kept[1:]))  # 2 s at 10 fps
    for task in tasks:  # each task video holds exactly its kept frames
        assert len(ffprobe_frames(service.settings.storage.url / Path(task["S3_url"]))[0]) == task["frameCount"]
        assert service.db.AnnotationFrame.count_documents({"taskId": task["_id"]}) == task["frameCount"]
    covered, counted = coverage(event_tracks(plays), {plays[n - 1] for n in kept if plays[n - 1]})
    assert counted >= 10 and covered == counted
    # Where a person looks: the jobs page row, the upload page, /metrics.
    client = service.app.test_client()
    saying = f"{len(kept)} of 300 frames kept"
    assert saying in client.get("/jobs", headers={"X-API-Key": NODE_KEY}).text
    assert saying in client.get(f"/jobs/uploads/{upload_id}", headers={"X-API-Key": NODE_KEY}).text
    assert metric(client.get("/metrics").text, "media_frames_total", stage="left_out") == 300 - len(kept)

    again = request(service, upload_id, project_id, "./street.mp4", force_write=1)
    assert again["status"] == 1 and again["sampling"] == {"mode": "timestamp", "sampled": 300, "kept": 300}
    assert sum(t["frameCount"] for t in service.db.AnnotationTask.find({"uploadId": upload_id})) == 300


def test_real_people_walking_are_all_covered():
    """vtest.avi (a real fixed camera, people always in motion): coverage of tracks of 1 s or more
    at least 98%, and nearly every frame kept (nothing is still)."""
    kept, sampled = kept_frames(real_clip_people(), 5)
    covered, counted = coverage(people_tracks(), set(kept))
    assert counted >= 50 and covered >= 0.98 * counted, (covered, counted)
    assert len(kept) >= 0.9 * sampled


def test_a_moving_camera_keeps_at_least_nine_frames_in_ten(tmp_path):
    """The bench scene (a pan and zoom over a textured background, faces entering): at least 90%
    of the frames kept, and every face on a kept frame."""
    scene = make_face_clip(tmp_path / "scene.mp4", frames=150, size=(1280, 720), fps=25, audio=False)
    kept, sampled = kept_frames(tmp_path / "scene.mp4", 5)
    assert len(kept) >= 0.9 * sampled, (len(kept), sampled)
    faces = {i: {n for n in range(1, 151) if len(scene.boxes(n)) > i} for i in range(2)}
    assert all(set(kept) & numbers for numbers in faces.values())


def held_numbers(number: int, width: int, height: int):
    """A clip still for most of its length: frames 1-60 show 1, 61-90 their own numbers, 91-180
    show 90, 181-200 their own (25 fps: 2.4 s still, 1.2 s moving, 3.6 s still, 0.8 s moving)."""
    shown = number if 61 <= number <= 90 or number > 180 else (1 if number <= 60 else 90)
    return render_frame(shown, width, height)


def test_the_field_is_checked_and_a_request_may_ask_for_either_mode(make_service):
    service = make_service(APP_RUN_WORKERS="false")
    make_video(service.content / "held.mp4", 20, 25, render=held_numbers)
    client = service.app.test_client()
    upload_id, project_id = new_upload(service.db, "./held.mp4")
    answer = client.post("/api/processContent", data=fields_for(upload_id, project_id, "./held.mp4",
                                                                  sampling_mode="every-other"))
    assert answer.status_code == 400 and answer.json["every-other"] == "sampling_mode must be timestamp or adaptive"
    assert upload_doc(service, upload_id)["errorMessage"]["error_code"] == 400
    for mode in ("adaptive", "timestamp"):
        upload_id, project_id = new_upload(service.db, "./held.mp4")
        assert client.post("/api/processContent", data=fields_for(upload_id, project_id, "./held.mp4",
                                                                   sampling_mode=mode)).status_code == 202
        job = service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
        assert job["params"]["sampling_mode"] == mode
    upload_id, project_id = new_upload(service.db, "./held.mp4")  # absent: the configured mode
    assert client.post("/api/processContent", data=fields_for(upload_id, project_id, "./held.mp4")).status_code == 202
    assert service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["params"]["sampling_mode"] == "timestamp"


@pytest.fixture
def held_clip(tmp_path):
    return make_video(tmp_path / "content" / "uploads" / "held.mp4", 200, 25, size=(320, 240), render=held_numbers)


ADAPTIVE = {"CONTENT_SAMPLING_MODE": "adaptive", "CONTENT_MAX_GAP_SECONDS": "0.5", "CONTENT_FRAMES_PER_TASK": "3"}


def test_a_resumed_adaptive_run_keeps_exactly_the_frames_of_an_uninterrupted_one(make_service, mongo_uri,
                                                                                   tmp_path, held_clip):
    """kill -9 right after the first task (three frames of the first still stretch) is committed:
    the next frames are near-duplicates of its last, and the resumed run must judge them against
    that frame as an unbroken run does."""
    from tests.conftest import service_env

    reference = make_service(STORAGE_URL=str(tmp_path / "ref-store"), **ADAPTIVE)
    upload_id, project_id = new_upload(reference.db, "./uploads/held.mp4", frame_rate=10, frames_per_task=3)
    assert request(reference, upload_id, project_id, "./uploads/held.mp4", frame_rate=10)["status"] == 1
    expected = snapshot(reference.db, tmp_path / "ref-store", upload_id)
    kept = [n for t in expected["tasks"] for n in t["original_frames"]]
    assert 10 < len(kept) < 80 and kept[3] <= 60  # 80 sampled; the first task ends inside the still stretch

    api = make_service(APP_RUN_WORKERS="false", STORAGE_URL=str(tmp_path / "crash-store"), **ADAPTIVE)
    api.db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": []})
    api.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0,
                                              "progress": 0, "frames_per_task": 3})
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name, JOBS_LEASE_SECONDS="2",
                      STORAGE_URL=str(tmp_path / "crash-store"), **ADAPTIVE)
    assert post_node(f"{api.url}/api/processContent", fields_for(upload_id, project_id, "./uploads/held.mp4",
                                                                 frame_rate=10)).status_code == 202
    job_id = f"content:{upload_id}"
    victim = HeldWorker(env, tmp_path / "hold", at=2, when="after")  # 1: the run's start, 2: task 0 committed
    try:
        victim.wait_held(api.db, job_id)
        assert api.db.ProcessingJob.find_one({"_id": job_id})["checkpoint"]["next_task"] == 1
        victim.kill()
    finally:
        victim.stop()
    finish_with_another_worker(env, tmp_path / "worker2.log", api.db, upload_id)
    assert api.db.ProcessingJob.find_one({"_id": job_id})["attempts"] == 2
    assert snapshot(api.db, tmp_path / "crash-store", upload_id) == expected
    assert api.db.AnnotationContentUpload.find_one({"_id": upload_id})["sampling"] == \
        reference.db.AnnotationContentUpload.find_one({"_id": upload_id})["sampling"]


def test_auto_annotation_and_a_dataset_work_on_the_kept_frames(make_service):
    """A dataset built from adaptive tasks has an image for each kept frame; request_type 1
    annotates exactly the kept frames."""
    from tests.test_datasets import create, make_version, wait_built

    service = make_service(**ADAPTIVE)
    version = make_version(service, frames=200, per_task=6, render=held_numbers)
    kept = [n for t in version.tasks for n in t["original_frames"]]
    assert 10 < len(kept) < 200
    assert create(service, version.id).status_code == 201
    assert wait_built(service, version.id)["state"] == "done"
    task_ids = [t["_id"] for t in version.tasks]
    assert service.db.AnnotationFrame.count_documents({"taskId": {"$in": task_ids}, "imageUrl": {"$exists": True}}) \
        == len(kept)

    make_video(service.content / "typed.mp4", 200, 25, render=held_numbers)
    upload_id, project_id = new_upload(service.db, "./typed.mp4", frame_rate=10, frames_per_task=6)
    service.db.AnnotationProject.update_one({"_id": project_id}, {"$set": {"labels": [{"label": "person"}]}})
    upload = request(service, upload_id, project_id, "./typed.mp4", frame_rate=10, request_type=1,
                     auto_anno_version=1)
    assert upload["status"] == 1 and upload["sampling"]["kept"] < upload["sampling"]["sampled"] == 80
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}))
    assert all(t["AutoAnnotationVersion"] == 1 for t in tasks)
    frames = service.db.AnnotationFrame.count_documents({"taskId": {"$in": [t["_id"] for t in tasks]}})
    assert frames == sum(len(t["original_frames"]) for t in tasks) == upload["sampling"]["kept"]
