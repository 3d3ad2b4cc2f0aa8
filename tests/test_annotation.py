"""Auto-annotation (issue 12): request types 1 and 2 end to end, on real video, a real detector and
a real MongoDB; the label policy; the human/auto box rule."""
from __future__ import annotations

import pytest
from bson import ObjectId

from media_service.contract import AUTO_MARK, is_untouched_auto_box
from tests.faces import FaceScene, make_face_clip
from tests.helpers import fields_for, post_node, wait_for_upload

BOX_KEYS = {"id", "boundaries", "attributeValues", "trackId", AUTO_MARK}
BOUNDARY_KEYS = {"id", "type", "label", "color", "status", "isPermanent", "x", "y", "w", "h", "attributeValues",
                 "autoLable_confidance"}


def project_with_labels(db, *labels: str) -> ObjectId:
    project_id = ObjectId()
    db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": [],
                                     "labels": [{"label": name, "color": "#00ff00"} for name in labels]})
    return project_id


def request(service, project_id, path: str, request_type: int, version: int, **overrides):
    upload_id = ObjectId()
    service.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0,
                                                   "frames_per_task": 10})
    answer = post_node(f"{service.url}/api/processContent",
                       fields_for(upload_id, project_id, path, request_type=request_type,
                                  auto_anno_version=version, **overrides))
    return upload_id, answer


def iou(a, b) -> float:
    ix1, iy1, ix2, iy2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, ix2 - ix1) * max(0, iy2 - iy1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def frames_of(db, upload_id) -> list[dict]:
    tasks = list(db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
    return [f for t in tasks for f in db.AnnotationFrame.find({"taskId": t["_id"]}).sort("frameId", 1)]


def test_request_type_1_cuts_tasks_with_boxes_in_the_contracts_shape(service):
    scene = make_face_clip(service.content / "faces.mp4", frames=50, audio=False)
    project_id = project_with_labels(service.db, "Face", "Person")
    upload_id, answer = request(service, project_id, "./faces.mp4", 1, 1, frame_rate=25)
    assert answer.status_code == 202, answer.text
    upload = wait_for_upload(service.db, upload_id, timeout=300)
    assert upload["status"] == 1, upload.get("errorMessage")
    assert upload["request_annotation_version"] == 1 and upload["annotationModel"].startswith("local yolox_nano")
    assert upload["detectedFrames"] < 35 and upload["annotationTracks"] >= 2  # detect_every 2, five task cuts
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}))
    assert len(tasks) == 5 and all(t["AutoAnnotationVersion"] == 1 for t in tasks)
    frames = frames_of(service.db, upload_id)
    assert len(frames) == 50
    found = 0
    for number, frame in enumerate(frames, 1):
        faces = [b for b in frame["boxes"] if b["boundaries"]["label"] == "Face"]
        assert frame["isEmpty"] is (not frame["boxes"])
        for box in frame["boxes"]:
            assert set(box) == BOX_KEYS and set(box["boundaries"]) == BOUNDARY_KEYS
            bounds = box["boundaries"]
            assert all(isinstance(bounds[k], int) for k in "xywh") and bounds["id"] == box["id"]
            assert bounds["type"] == "rectangle" and bounds["isPermanent"] is True
            assert isinstance(bounds["autoLable_confidance"], str) and 0 < float(bounds["autoLable_confidance"]) <= 1
            assert box["attributeValues"] == {"state": "Ready"} and is_untouched_auto_box(box)
        truth = scene.boxes(number)
        if faces and truth:
            best = max(iou((f["boundaries"]["x"], f["boundaries"]["y"], f["boundaries"]["x"] + f["boundaries"]["w"],
                            f["boundaries"]["y"] + f["boundaries"]["h"]), truth[0]) for f in faces)
            found += best > 0.5
    assert found >= 45  # the face, where it really is, on nearly every frame
    assert [b["id"] for f in frames for b in f["boxes"]] == [i for f in frames for i in range(len(f["boxes"]))]
    # One id per object for the whole upload, across the five task cuts: the face A in the
    # middle of the picture keeps one trackId on all 50 frames.
    centre = [{b["trackId"] for b in f["boxes"] if b["boundaries"]["label"] == "Face"
               and iou(box_xyxy(b), scene.boxes(n)[0]) > 0.3} for n, f in enumerate(frames, 1)]
    assert sum(1 for ids in centre if ids) >= 45 and len(set().union(*centre)) == 1


def box_xyxy(box: dict) -> tuple[int, int, int, int]:
    b = box["boundaries"]
    return b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]


def test_the_face_model_runs_only_for_projects_with_a_face_label(service, caplog):
    import logging

    make_face_clip(service.content / "people.mp4", frames=8, audio=False)
    with caplog.at_level(logging.INFO, logger="media_service.annotation.handler"):
        outcomes = {}
        for labels in (("Person",), ("Person", "Face")):
            project_id = project_with_labels(service.db, *labels)
            upload_id, answer = request(service, project_id, "./people.mp4", 1, 1, frame_rate=25)
            assert answer.status_code == 202
            upload = wait_for_upload(service.db, upload_id, timeout=300)
            assert upload["status"] == 1, upload.get("errorMessage")
            written = {b["boundaries"]["label"] for f in frames_of(service.db, upload_id) for b in f["boxes"]}
            outcomes[labels] = (upload["annotationModel"], written)
    assert "centerface" not in outcomes[("Person",)][0] and outcomes[("Person",)][1] == {"Person"}
    assert "centerface" in outcomes[("Person", "Face")][0] and outcomes[("Person", "Face")][1] == {"Person", "Face"}
    said = [r.getMessage() for r in caplog.records if "face model" in r.getMessage()]
    assert said == ["the project has no face label: the face model is not run",
                    "the project has a face label: the face model runs on every detected frame"]


def auto_boxes(frame: dict) -> list[dict]:
    return [b for b in frame["boxes"] if AUTO_MARK in b]


def test_request_type_2_re_annotates_in_place_and_never_touches_a_persons_box(service):
    make_face_clip(service.content / "again.mp4", frames=30, audio=False)
    project_id = project_with_labels(service.db, "Face", "Person")
    cut, answer = request(service, project_id, "./again.mp4", 0, 0, frame_rate=25)
    assert answer.status_code == 202 and wait_for_upload(service.db, cut)["status"] == 1
    frames = frames_of(service.db, cut)
    frame_ids = [f["_id"] for f in frames]
    drawn = {"id": 0, "boundaries": {"id": 0, "type": "rectangle", "label": "Person", "color": "#ff0000",
                                     "status": "completed", "x": 1, "y": 2, "w": 30, "h": 40, "attributeValues": {}},
             "attributeValues": {"state": "Ready"}}
    service.db.AnnotationFrame.update_one({"_id": frame_ids[0]}, {"$set": {"boxes": [drawn], "isEmpty": False}})

    first, answer = request(service, project_id, "./again.mp4", 2, 1)
    assert answer.status_code == 202, answer.text
    upload = wait_for_upload(service.db, first, timeout=300)
    assert upload["status"] == 1 and upload["annotatedTasks"] == 3 and upload["request_annotation_version"] == 1
    after_v1 = frames_of(service.db, cut)
    assert [f["_id"] for f in after_v1] == frame_ids  # no frame doc added or removed
    assert after_v1[0]["boxes"][0] == drawn  # the person's box, untouched, first
    assert [b["id"] for b in after_v1[0]["boxes"]] == list(range(len(after_v1[0]["boxes"])))
    assert all(auto_boxes(f) and all(b[AUTO_MARK]["version"] == 1 for b in auto_boxes(f)) for f in after_v1)
    assert all(t["AutoAnnotationVersion"] == 1 for t in service.db.AnnotationTask.find({"uploadId": cut}))

    # A person moves an auto box on frame 2: it is theirs now.
    moved = dict(auto_boxes(after_v1[1])[0])
    moved["boundaries"] = {**moved["boundaries"], "x": moved["boundaries"]["x"] + 7}
    service.db.AnnotationFrame.update_one({"_id": frame_ids[1]}, {"$set": {"boxes": [moved]}})

    for version in (1, 0):  # an older or equal version is refused
        refused, answer = request(service, project_id, "./again.mp4", 2, version)
        assert answer.status_code == 400
    second, answer = request(service, project_id, "./again.mp4", 2, 2)
    assert answer.status_code == 202 and wait_for_upload(service.db, second, timeout=300)["status"] == 1
    after_v2 = frames_of(service.db, cut)
    assert [f["_id"] for f in after_v2] == frame_ids
    assert after_v2[0]["boxes"][0] == drawn and after_v2[1]["boxes"][0] == moved
    for before, now in zip(after_v1[2:], after_v2[2:]):
        assert len(auto_boxes(now)) == len(auto_boxes(before))  # replaced, not added to
        assert all(b[AUTO_MARK]["version"] == 2 for b in auto_boxes(now))
    assert service.db.AnnotationFrame.count_documents({}) == 30


def test_a_back_end_that_cannot_load_refuses_the_request_at_once(make_service):
    service = make_service(APP_RUN_WORKERS="false", INFERENCE_TYPE="darknet",
                           INFERENCE_CONFIG_FILE="/nowhere/yolo.cfg", INFERENCE_WEIGHT_FILE="/nowhere/yolo.weights",
                           INFERENCE_LABELS_FILE="/nowhere/names.txt")
    make_face_clip(service.content / "x.mp4", frames=4, audio=False)
    project_id = project_with_labels(service.db, "Face")
    upload_id, answer = request(service, project_id, "./x.mp4", 1, 1)
    assert answer.status_code == 422 and "yolo.cfg: no such file" in answer.json()["message"]
    doc = service.db.AnnotationContentUpload.find_one({"_id": upload_id})
    assert doc["status"] == 2 and doc["errorMessage"]["error_code"] == 422
    assert service.db.ProcessingJob.count_documents({}) == 0


def test_type_2_without_tasks_is_404(service):
    make_face_clip(service.content / "none.mp4", frames=4, audio=False)
    project_id = project_with_labels(service.db, "Face")
    upload_id, answer = request(service, project_id, "./none.mp4", 2, 1)
    assert answer.status_code == 404 and "no tasks" in answer.json()["message"]


def annotation_snapshot(db, project_id) -> dict:
    """Everything the runs wrote, without ids and times: tasks, and every frame's boxes."""
    tasks = list(db.AnnotationTask.find({"projectId": project_id}).sort("taskName", 1))
    ignored = {"_id", "createdAt", "videoPath", "uploadId"}
    return {"tasks": [{k: v for k, v in t.items() if k not in ignored} for t in tasks],
            "frames": {t["taskName"]: [(f["frameId"], f["boxes"], f["isEmpty"])
                                       for f in db.AnnotationFrame.find({"taskId": t["_id"]}).sort("frameId", 1)]
                       for t in tasks},
            "frame_docs": db.AnnotationFrame.count_documents({})}


@pytest.mark.parametrize("request_type", [1, 2])
def test_kill_9_during_auto_annotation_ends_like_an_uninterrupted_run(make_service, mongo_uri, tmp_path,
                                                                     request_type):

    from tests.conftest import service_env
    from tests.held_worker import HeldWorker, finish_with_another_worker

    clip_name = "crash.mp4"
    make_face_clip(tmp_path / "content" / clip_name, frames=60, audio=False)

    def prepare(service):
        project_id = project_with_labels(service.db, "Face", "Person")
        if request_type == 2:  # the tasks to annotate, cut first (the same for both runs)
            cut, answer = request(service, project_id, f"./{clip_name}", 0, 0, frame_rate=25)
            assert answer.status_code == 202 and wait_for_upload(service.db, cut)["status"] == 1
        return project_id

    reference = make_service()
    project_ref = prepare(reference)
    upload_id, answer = request(reference, project_ref, f"./{clip_name}", request_type, 1, frame_rate=25)
    assert answer.status_code == 202 and wait_for_upload(reference.db, upload_id, timeout=300)["status"] == 1
    expected = annotation_snapshot(reference.db, project_ref)

    crash = make_service(APP_RUN_WORKERS="false")
    project_id = project_ref
    crash.db.AnnotationProject.insert_one(reference.db.AnnotationProject.find_one({"_id": project_ref}))
    if request_type == 2:
        crash.services.start_workers()
        cut, answer = request(crash, project_id, f"./{clip_name}", 0, 0, frame_rate=25)
        assert answer.status_code == 202 and wait_for_upload(crash.db, cut)["status"] == 1
        crash.services.pool.shutdown(grace=5)
    upload_id, answer = request(crash, project_id, f"./{clip_name}", request_type, 1, frame_rate=25)
    assert answer.status_code == 202
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=crash.settings.mongodb.db_name, JOBS_LEASE_SECONDS="2",
                      JOBS_HEARTBEAT_SECONDS="0.5")
    # Checkpoint 1 is the run's start, n+1 follows task n: killed with 2 of the 6 tasks done.
    victim = HeldWorker(env, tmp_path / "hold", at=3, when="after")
    try:
        victim.wait_held(crash.db, f"content:{upload_id}")
        assert crash.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["checkpoint"]["next_task"] == 2
        victim.kill()
    finally:
        victim.stop()
    finish_with_another_worker(env, tmp_path / "survivor.log", crash.db, upload_id, timeout=300)
    assert crash.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})["attempts"] == 2
    got = annotation_snapshot(crash.db, project_id)
    if request_type == 2:  # the cut's own upload ids differ between the two databases
        for task in got["tasks"] + expected["tasks"]:
            task.pop("uploadId", None)
    assert got == expected


def test_type_2_on_the_cuts_upload_keeps_its_own_row_and_reports_progress_per_batch(make_service, mongo_uri,
                                                                                    tmp_path):
    """Issue 33: a type-2 run sat at 0 % with no ETA, then moved a task at a time, and (sent with the
    cut's own upload_id, so the same job id) replaced the cut's row on the jobs page. Now: progress per
    batch of frames with an ETA, each run its own row, and the same request twice while queued gets the
    current state (CONTRACT §1). The log names the request type."""
    import requests

    from mongo_manager import utcnow
    from tests.conftest import NODE_KEY
    from tests.held_worker import HeldWorker
    from tests.helpers import wait_for
    from tests.test_cancel import worker_env

    api = make_service(APP_RUN_WORKERS="false")
    # One task of 40 frames, handed to the annotator 16 at a time (8 detected: every 2nd frame).
    make_face_clip(api.content / "walk.mp4", frames=40, audio=False)
    project_id = project_with_labels(api.db, "Face", "Person")
    upload_id = ObjectId()
    job_id = f"content:{upload_id}"
    api.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0,
                                               "frames_per_task": 120})
    url, keyed = f"{api.url}/api/processContent", {"X-API-Key": NODE_KEY}
    api.services.start_workers()
    assert post_node(url, fields_for(upload_id, project_id, "./walk.mp4", frame_rate=25)).status_code == 202
    assert wait_for_upload(api.db, upload_id)["status"] == 1
    api.services.pool.shutdown(grace=5)
    api.services.pool = None
    fields = fields_for(upload_id, project_id, "./walk.mp4", request_type=2, auto_anno_version=1)
    assert post_node(url, fields).status_code == 202
    again = post_node(url, fields)
    assert again.status_code == 200 and again.json()["state"] == "queued"
    rows = requests.get(f"{api.url}/api/jobs", headers=keyed, timeout=10).json()["jobs"]
    assert [(row["id"], row["kind"], row["state"]) for row in rows] == [
        (job_id, "annotation", "queued"), (f"{job_id}@run1", "content", "done")]
    earlier = rows[1]
    assert not earlier["can_retry"] and earlier["params"]["request_type"] == 0
    retry = requests.post(f"{api.url}{earlier['url']}/retry", headers=keyed, timeout=10)
    assert retry.status_code == 409 and "earlier run" in retry.json()["message"]

    # Held after its first and its second report; the ETA comes from the rate measured once the
    # attempt has run half a second.
    worker = HeldWorker(worker_env(api, mongo_uri, tmp_path), tmp_path / "hold", "1,2", "after", on="progress")
    try:
        worker.wait_held(api.db, job_id, at=1)
        started = api.db.ProcessingJob.find_one({"_id": job_id})["started_at"]
        wait_for(lambda: (utcnow() - started).total_seconds() > 0.6, what="the attempt to have run 0.6 s")
        worker.release(1)
        worker.wait_held(api.db, job_id, at=2)
        job = api.db.ProcessingJob.find_one({"_id": job_id})
        assert job["progress"] == 80.0 and job["eta_seconds"] > 0, job  # 32 of 40 frames, within the task
        assert job["stage"] == "annotating" and job["checkpoint"]["next_task"] == 0  # no resume point moved
        status = requests.get(f"{api.url}/api/processContent/status", params={"upload_id": str(upload_id)},
                              headers=keyed, timeout=10).json()
        assert status["progress"] == 80.0 and status["eta_seconds"] > 0 and status["request_type"] == 2
        assert 0 < api.db.AnnotationContentUpload.find_one({"_id": upload_id})["progress"] <= 80.0
        worker.release()
        upload = wait_for_upload(api.db, upload_id, timeout=300)
    finally:
        worker.stop()
    assert upload["status"] == 1 and upload["annotatedTasks"] == 1
    rows = requests.get(f"{api.url}/api/jobs", headers=keyed, timeout=10).json()["jobs"]
    assert [(row["id"], row["state"]) for row in rows] == [(job_id, "done"), (f"{job_id}@run1", "done")]
    started = [line for line in worker.log.read_text().splitlines() if f"job {job_id} started" in line]
    assert started and all("request_type=2" in line for line in started), started


def test_the_label_policy_maps_filters_and_counts():
    from media_service.annotation.policy import LabelPolicy
    from media_service.config import load_settings
    from media_service.detectors import Detection

    settings = load_settings({"ANNOTATION_LABEL_MAP": "person: Staff, cell phone: Phone",
                              "ANNOTATION_MIN_SCORES": "face: 0.7", "ANNOTATION_ALLOW_LABELS": "",
                              "ANNOTATION_MAX_BOXES_PER_FRAME": "3"})
    policy = LabelPolicy.build([{"label": "staff"}, {"label": "FACE", "color": "#123456"}, {"label": "Phone"}],
                               settings.annotation)

    def det(label, score):
        return Detection(0, 0, 10, 10, score, label)

    kept = policy.keep([det("person", 0.9), det("face", 0.65), det("Face", 0.8), det("cell phone", 0.6),
                        det("car", 0.99), det("dog", 0.5), det("person", 0.55)])
    assert [(label, d.score) for label, d in kept] == [("staff", 0.9), ("FACE", 0.8), ("Phone", 0.6)]
    assert policy.left_out == {"car": 1, "dog": 1}
    assert policy.colors["FACE"] == "#123456" and policy.colors["staff"].startswith("#")
    only_faces = LabelPolicy.build([{"label": "Face"}, {"label": "Person"}],
                                   load_settings({"ANNOTATION_ALLOW_LABELS": "face"}).annotation)
    assert [label for label, _ in only_faces.keep([det("person", 0.9), det("face", 0.9)])] == ["Face"]


def test_rekognition_type_1_over_its_http_protocol_with_retries_and_billable_calls(make_service):
    from media_service.detectors.centerface import CenterFace
    from tests.rekognition_stand_in import RekognitionStandIn, signature_valid

    labels = {"LabelModelVersion": "3.0", "Labels": [
        {"Name": "Person", "Confidence": 97.0, "Instances": [
            {"BoundingBox": {"Left": 0.1, "Top": 0.2, "Width": 0.3, "Height": 0.5}, "Confidence": 96.0}]},
        {"Name": "Sky", "Confidence": 90.0, "Instances": []}]}  # no instance: no box
    stand_in = RekognitionStandIn(labels, face_detector=CenterFace(threshold=0.5, threads=1))
    try:
        service = make_service(INFERENCE_TYPE="rekognition", REKOGNITION_ENDPOINT_URL=stand_in.url,
                               S3_ACCESS_KEY_ID="AKIDEXAMPLE", S3_SECRET_ACCESS_KEY="secret-example",
                               REKOGNITION_WORKERS="2")
        make_face_clip(service.content / "rk.mp4", frames=20, audio=False)
        project_id = project_with_labels(service.db, "Person", "Face")
        stand_in.throttle = 3  # answered by botocore's own retries
        upload_id, answer = request(service, project_id, "./rk.mp4", 1, 1, frame_rate=25)
        assert answer.status_code == 202
        upload = wait_for_upload(service.db, upload_id, timeout=300)
        assert upload["status"] == 1, upload.get("errorMessage")
        # detect_every 2: frames 1, 3, ..., 9 and 10 of each 10-frame task: 12 of 20 frames, one
        # DetectLabels and one DetectFaces each, none throttled
        assert upload["rekognitionCalls"] == 24 and upload["detectedFrames"] == 12
        assert len(stand_in.requests) == 27 and all(signature_valid(r, "AKIDEXAMPLE", "secret-example")
                                                   for r in stand_in.requests)
        frames = frames_of(service.db, upload_id)
        people = [b["boundaries"] for f in frames for b in f["boxes"] if b["boundaries"]["label"] == "Person"]
        assert len(people) == 20 and {(p["x"], p["y"], p["w"], p["h"]) for p in people} == {(64, 72, 192, 180)}
        assert {p["autoLable_confidance"] for p in people} == {"0.9600"}
        assert len({b["trackId"] for f in frames for b in f["boxes"] if b["boundaries"]["label"] == "Person"}) == 1
        assert sum(1 for f in frames for b in f["boxes"] if b["boundaries"]["label"] == "Face") >= 18
        # A permanent error (no permission): the run fails at once, recorded.
        stand_in.fail_with = "AccessDeniedException"
        failing, answer = request(service, project_id, "./rk.mp4", 1, 2, frame_rate=25, force_write=1)
        assert answer.status_code == 202
        upload = wait_for_upload(service.db, failing, timeout=120)
        assert upload["status"] == 2 and "detector_misconfigured" in upload["errorMessage"]["message"]
        assert service.db.ProcessingJob.find_one({"_id": f"content:{failing}"})["attempts"] == 1
    finally:
        stand_in.close()


def test_detect_every_k_detects_fewer_frames_and_the_tracker_places_boxes_between(tmp_path):
    """[Inference] detect_every 3: the detector sees every third frame of a task and its last; the
    tracker's motion model puts the face where it is on the frames between (the scene's face pans
    steadily), with one trackId."""
    from media_service.annotation.annotator import Annotator
    from media_service.annotation.policy import LabelPolicy
    from media_service.config import load_settings
    from media_service.detectors.factory import annotation_detector

    settings = load_settings({})
    detector = annotation_detector(settings)

    class Counting:
        name, version, seen = detector.name, detector.version, 0

        def detect_batch(self, frames, threshold=None):
            Counting.seen += len(frames)
            return detector.detect_batch(frames, threshold)

    scene = FaceScene(24, 640, 360)
    frames = [scene.render(n)[:, :, ::-1].copy() for n in range(1, 25)]  # RGB
    policy = LabelPolicy.build([{"label": "Face"}], settings.annotation)
    annotator = Annotator(Counting(), policy, 1, 640, 8, detect_every=3)
    assert annotator.batch_size == 24
    annotator.add(frames[:10], (640, 360))  # a task handed over in two parts
    annotator.add(frames[10:], (640, 360))
    boxes = annotator.end_task()
    assert Counting.seen == 9  # frames 0, 3, ..., 21 and 23
    hits, ids = 0, set()
    for number, frame_boxes in enumerate(boxes, 1):
        faces = [box_xyxy(b) for b in frame_boxes]
        ids |= {b["trackId"] for b in frame_boxes if iou(box_xyxy(b), scene.boxes(number)[0]) > 0.5}
        hits += any(iou(face, scene.boxes(number)[0]) > 0.5 for face in faces)
    assert hits >= 22 and len(ids) == 1
