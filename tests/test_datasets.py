"""The dataset builder (issue 13): versions built from tasks the pipeline cut from a real clip, over
real HTTP, a real MongoDB, local storage and SeaweedFS; resume after kill -9; bad input."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import requests
import yaml
from bson import ObjectId

from tests.conftest import NODE_KEY, ROOT, service_env
from tests.helpers import fields_for, new_upload, post_node, wait_for_job, wait_for_upload
from tests.media import make_video

SIZE = (320, 240)
OBJECT = (60, 40, 140, 100)  # the red object: x1, y1, x2, y2 in every frame


def render_with_object(number: int, width: int, height: int) -> np.ndarray:
    """A textured frame with a pure red rectangle (the object the boxes are drawn around)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (x * 255 // (width - 1) + number * 5) % 200  # blue and green only: nothing red
    image[..., 1] = (y * 255 // (height - 1)) % 200
    image[..., 2] = 30
    x1, y1, x2, y2 = OBJECT
    image[y1:y2, x1:x2] = (0, 0, 255)
    return image


def box(label: str, x: int, y: int, w: int, h: int, **attributes) -> dict:
    return {"id": 0, "boundaries": {"id": 0, "type": "rectangle", "label": label, "x": x, "y": y, "w": w, "h": h,
                                    "attributeValues": attributes}, "attributeValues": {"state": "Ready"}}


FRAME_BOXES = [
    box("Car", OBJECT[0], OBJECT[1], OBJECT[2] - OBJECT[0], OBJECT[3] - OBJECT[1], parking="Parked"),  # class 1
    box("Person", 200, 120, 40, 80),             # class 0
    box("Tree", 10, 150, 30, 60),                # a disabled label: dropped
    box("Person", 290, 200, 60, 60),             # reaches outside: clipped to 290..320 x 200..240
    box("Person", 50, 50, 0, 20),                # no area: dropped
]
LABELS = [{"mainLabel": "Person", "attributes": [], "isEnabled": True},
          {"mainLabel": "Car", "attributes": [{"key": "parking", "values": ["Parked"]}], "isEnabled": True},
          {"mainLabel": "Tree", "attributes": [], "isEnabled": False}]
# As the platform sends them (CONTRACT §2): switches apply only when values[0] is true.
AUGMENTATIONS = {"IMAGE_LEVEL": [
    {"id": "FLIP", "properties": [{"id": "FLIP_HORIZONTAL", "values": [True]},
                                  {"id": "FLIP_VERTICAL", "values": [False]}]},
    {"id": "ROTATE", "properties": [{"id": "CLOCKWISE", "values": [True]},
                                    {"id": "COUNTER_CLOCKWISE", "values": [False]},
                                    {"id": "UPSIDE_DOWN", "values": []}]},
    {"id": "BLUR", "properties": [{"id": "BLUR", "values": [0.8, 1.2]}]}],
    "BOUNDING_BOX_LEVEL": []}


@dataclass
class Version:
    id: ObjectId
    group: ObjectId
    tasks: list[dict]


def make_version(service, frames: int = 10, per_task: int = 5, size: tuple[int, int] = SIZE,
                 render=render_with_object, rate: int = 10, **version_fields) -> Version:
    """Tasks cut by the pipeline (at `rate` fps) from a 10 fps clip with the red object, boxes on every
    frame, splits as Node sets them (first half training, second validation), and the version doc."""
    make_video(service.content / "object.mp4", frames, 10, size=size, render=render)
    upload_id, project_id = new_upload(service.db, "./object.mp4", frame_rate=rate, frames_per_task=per_task)
    idle = service.services.pool is None
    if idle:  # the tasks are cut by workers; the caller's service may have none
        service.services.start_workers()
    assert post_node(f"{service.url}/api/processContent",
                     fields_for(upload_id, project_id, "./object.mp4", frame_rate=rate)).status_code == 202
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    if idle:
        service.services.pool.shutdown(grace=5)
        service.services.pool = None
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
    version_id, group = ObjectId(), ObjectId()
    for task in tasks:
        for frame in service.db.AnnotationFrame.find({"taskId": task["_id"]}):
            split = 1 if frame["frameId"] <= per_task // 2 + 1 else 2
            service.db.AnnotationFrame.update_one({"_id": frame["_id"]}, {"$set": {
                "boxes": FRAME_BOXES, "isEmpty": False,
                "datasetVersions": [{"versionId": version_id, "datasetType": split}]}})
    service.db.MasterData.insert_one({"exportFormats": {"YOLO": {"category": "Object Detection", "name": "YOLO",
                                                                 "fileType": "zip"}}})
    service.db.AnnotationDatasetVersion.insert_one({
        "_id": version_id, "dataSetGroupId": group, "versionNo": "1.0.0",
        "taskList": [str(t["_id"]) for t in tasks], "labelAttributeList": LABELS,
        "splitCount": [{"percentage": 70}, {"percentage": 30}, {"percentage": 0}],
        "augmentationTypes": AUGMENTATIONS, **version_fields})
    return Version(version_id, group, tasks)


def create(service, version_id, key: str = NODE_KEY) -> requests.Response:
    return post_node(f"{service.url}/api/createDataSet", {"data_version_id": str(version_id), "auth_key": key})


def wait_built(service, version_id, timeout: float = 180) -> dict:
    """The dataset job once it has ended."""
    return wait_for_job(service.db, f"dataset:{version_id}", timeout=timeout, what=f"dataset {version_id} to be built")


def red_box(image_bgr: np.ndarray) -> tuple[int, int, int, int]:
    """Where the red object is in a picture: the bounding box of its strongly red pixels."""
    red = (image_bgr[..., 2] > 180) & (image_bgr[..., 1] < 80) & (image_bgr[..., 0] < 80)
    ys, xs = np.nonzero(red)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def yolo_box(line: str, width: int, height: int) -> tuple[str, tuple[float, float, float, float]]:
    cls, cx, cy, w, h = line.split()
    cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
    return cls, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def stored(service, key: str) -> bytes:
    return (Path(service.settings.storage.url) / key).read_bytes()


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_a_version_is_built_with_every_key_label_augmentation_and_export(service):
    version = make_version(service)
    answer = create(service, version.id)
    assert answer.status_code == 201, answer.text
    job = wait_built(service, version.id)
    assert job["state"] == "done", job.get("last_error")
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    assert doc["taskStatus"]["state"] == "complete" and doc["imageCount"] == 10 * 4
    entries = doc["taskStatus"]["tasks"]
    assert [e["task"] for e in entries] == [str(t["_id"]) for t in version.tasks]
    for entry in entries:
        assert entry["state"] == "complete" and entry["error"] == "none" and entry["imageCount"] == 20
        counts = entry["augmentationFileCounts"]  # the old service's shape: {augType: {count, size}}
        assert {aug: c["count"] for aug, c in counts.items()} == {"HorizontalFlip": 5, "Rotate90": 5, "GaussianBlur": 5}
        assert all(c["size"] > 0 and set(c) == {"count", "size"} for c in counts.values())
        assert entry["imageDataSize"] > 0
    assert doc["size"] == sum(e["imageDataSize"] for e in entries)
    yolo = doc["exportFormats"]["YOLO"]
    assert yolo["progress"] == 100 and yolo["category"] == "Object Detection"
    assert yolo["fileCount"] == doc["imageCount"] == 40  # images, as the old service counted
    assert yolo["sample"] == f"dataset/{version.group}/{version.id}/samples.zip"

    group = version.group
    for task in version.tasks:
        for frame in service.db.AnnotationFrame.find({"taskId": task["_id"]}).sort("frameId", 1):
            base = f"dataset/{group}/{task['_id']}/{frame['frameId']}"
            assert frame["imageUrl"] == f"{base}/{frame['frameId']}.jpg"
            assert frame["thumbnailUrl"] == f"{base}/{frame['frameId']}_thumbnail.jpg"
            # Signed HTTP URLs of this service, where S3 would have presigned ones (local storage).
            assert frame["awsUrl"].startswith(f"{service.url}/storage/{frame['imageUrl']}?expires=")
            assert requests.get(frame["awsThumbnailUr"], timeout=10).content == stored(service, frame["thumbnailUrl"])
            assert frame["awsExpiredDate"] > frame.get("createdAt", frame["awsExpiredDate"].replace(year=2000))
            image = decode(stored(service, frame["imageUrl"]))
            assert image.shape[:2] == (240, 320)
            assert max(decode(stored(service, frame["thumbnailUrl"])).shape[:2]) == 250
            (entry,) = frame["datasetVersions"]
            labels_key = f"{base}/1.0.0_{frame['frameId']}.txt"
            assert entry["datasetType"] in (1, 2) and entry["textFiles"] == {"YOLO": labels_key}
            lines = stored(service, entry["textFiles"]["YOLO"]).decode().splitlines()
            # Recomputed by hand: Car (parked) is class 1, Person class 0; Tree (disabled) and the
            # box without area are dropped; the box reaching outside is clipped to the picture.
            assert lines == [f"1 {100 / 320:.6f} {70 / 240:.6f} {80 / 320:.6f} {60 / 240:.6f}",
                             f"0 {220 / 320:.6f} {160 / 240:.6f} {40 / 320:.6f} {80 / 240:.6f}",
                             f"0 {305 / 320:.6f} {220 / 240:.6f} {30 / 320:.6f} {40 / 240:.6f}"]
            assert iou(yolo_box(lines[0], 320, 240)[1], red_box(image)) > 0.8
            assert set(entry["augmentationImages"]) == {"HorizontalFlip", "Rotate90", "GaussianBlur"}
            for aug, files in entry["augmentationImages"].items():
                assert files["imageUrl"] == f"{base}/augmentations/{aug}_{frame['frameId']}.jpg"
                assert files["textFiles"] == {"YOLO": f"{base}/augmentations/1.0.0_{aug}_{frame['frameId']}.txt"}
                assert files["thumbnailUrl"] == f"{base}/augmentations/{aug}_{frame['frameId']}_thumbnail.jpg"
                assert requests.get(files["awsImageUrl"], timeout=10).content == stored(service, files["imageUrl"])
                assert files["awsThumbnailUrl"].startswith(f"{service.url}/storage/{files['thumbnailUrl']}?")
                assert files["awsThumbnailExpiredDate"] == frame["awsThumbnailExpiredDate"]
                picture = decode(stored(service, files["imageUrl"]))
                assert decode(stored(service, files["thumbnailUrl"])).shape[:2] != picture.shape[:2]
                height, width = picture.shape[:2]
                aug_lines = stored(service, files["textFiles"]["YOLO"]).decode().splitlines()
                car = next(line for line in aug_lines if line.startswith("1 "))
                # The box moved with the picture: it still covers the red object.
                assert iou(yolo_box(car, width, height)[1], red_box(picture)) > 0.8, (aug, car)
            flipped = decode(stored(service, entry["augmentationImages"]["HorizontalFlip"]["imageUrl"]))
            assert red_box(flipped)[0] == 320 - OBJECT[2]  # mirrored left to right, not up and down

    archive = f"dataset/{group}/{version.id}/exports"
    exports = {name: zipfile.ZipFile(io.BytesIO(stored(service, f"{archive}/{name}.zip")))
               for name in ("yolo", "coco")}
    data = yaml.safe_load(exports["yolo"].read("data.yaml"))
    assert data["names"] == {0: "Person", 1: "Car (parking=parked)", 2: "Tree"}
    names = exports["yolo"].namelist()
    for split in ("train", "val"):
        assert data[split] == f"images/{split}" and any(n.startswith(f"images/{split}/") for n in names)
    train_images = [n for n in names if n.startswith("images/train/")]
    assert len(train_images) == len([n for n in names if n.startswith("labels/train/")]) > 0
    from pycocotools.coco import COCO
    members = sorted(n for n in exports["coco"].namelist() if n.endswith(".json"))
    images = {}
    for member in members:
        path = Path(service.content.parent / Path(member).name)
        path.write_bytes(exports["coco"].read(member))
        coco = COCO(str(path))
        images[Path(member).stem] = len(coco.getImgIds())
        assert all(len(coco.loadAnns(coco.getAnnIds(imgIds=[i]))) == 3 for i in coco.getImgIds())
        assert {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"Person"}
    assert sum(images.values()) == 40 and len(members) == 3 and sorted(images.values())[0] == 0  # no test split
    samples = zipfile.ZipFile(io.BytesIO(stored(service, yolo["sample"])))
    assert "data.yaml" in samples.namelist() and any(n.startswith("images/train/") for n in samples.namelist())


def render_scaled(number: int, width: int, height: int) -> np.ndarray:
    """The object scene drawn at 320x240 and scaled: at any size the object is where the boxes say."""
    return cv2.resize(render_with_object(number, *SIZE), (width, height), interpolation=cv2.INTER_NEAREST)


def test_source_resolution_takes_each_frame_from_the_source_at_its_number_and_falls_back_without_it(make_service):
    service = make_service(DATASET_SOURCE_RESOLUTION="true", CONTENT_TASK_MAX_HEIGHT="240")
    version = make_version(service, frames=20, per_task=5, size=(640, 480), render=render_scaled, rate=5)
    assert {(t["videoResolutionWidth"], t["videoResolutionHeight"]) for t in version.tasks} == {SIZE}
    stat = (service.content / "object.mp4").stat()
    cut_from = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "path": "./object.mp4"}
    assert all(t["sourceFingerprint"] == cut_from for t in version.tasks)  # each task names the file it came from
    # The builder finds the source from the task documents alone: the content job's is gone.
    assert service.db.ProcessingJob.delete_many({"kind": "content"}).deleted_count == 1
    assert create(service, version.id).status_code == 201
    assert wait_built(service, version.id)["state"] == "done"
    numbers = [n for task in version.tasks for n in task["original_frames"]]
    assert numbers == list(range(1, 20, 2))  # 5 of the clip's 10 fps: every other source frame
    for task in version.tasks:
        for frame in service.db.AnnotationFrame.find({"taskId": task["_id"]}):
            image = decode(stored(service, frame["imageUrl"])).astype(np.int16)
            assert image.shape[:2] == (480, 640)
            number = task["original_frames"][frame["frameId"] - 1]
            # The source frame it was cut from, not a neighbour (the texture moves from frame to frame).
            error = {n: np.abs(image - render_scaled(n, 640, 480)).mean() for n in range(1, 21)}
            assert min(error, key=error.get) == number, (number, error)
            entry = frame["datasetVersions"][0]
            lines = stored(service, entry["textFiles"]["YOLO"]).decode().splitlines()
            assert lines[0] == f"1 {100 / 320:.6f} {70 / 240:.6f} {80 / 320:.6f} {60 / 240:.6f}"  # as at 320x240
            assert iou(yolo_box(lines[0], 640, 480)[1], red_box(image.astype(np.uint8))) > 0.8
            flipped = decode(stored(service, entry["augmentationImages"]["HorizontalFlip"]["imageUrl"]))
            assert flipped.shape[:2] == (480, 640) and abs(red_box(flipped)[0] - (640 - 2 * OBJECT[2])) <= 2

    # Tasks cut before they carried a fingerprint, or one without the path (the source unchanged, but
    # nothing on the task says so), then a source replaced since (another clip of as many frames; the
    # task doc alone tells), then one that is gone: new versions of the same tasks get the task
    # videos' pictures, never another clip's.
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id}, {"_id": 0, "taskList": 1,
                                                                           "labelAttributeList": 1})
    upload = {"uploadId": version.tasks[0]["uploadId"]}
    for change in ("tasks cut before they carried it", "no path", "replaced", "gone"):
        if change.startswith("tasks cut before"):
            service.db.AnnotationTask.update_many(upload, {"$unset": {"sourceFingerprint": ""}})
        elif change == "no path":
            service.db.AnnotationTask.update_many(upload, {"$set": {"sourceFingerprint": {
                "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}}})
        elif change == "replaced":
            service.db.AnnotationTask.update_many(upload, {"$set": {"sourceFingerprint": cut_from}})
            make_video(service.content / "object.mp4", 20, 10, size=(640, 480))
        else:
            (service.content / "object.mp4").unlink()
        again = ObjectId()
        service.db.AnnotationFrame.update_many({"taskId": {"$in": [t["_id"] for t in version.tasks]}},
                                               {"$push": {"datasetVersions": {"versionId": again, "datasetType": 1}}})
        service.db.AnnotationDatasetVersion.insert_one({**doc, "_id": again, "dataSetGroupId": ObjectId(),
                                                        "versionNo": "1.0.0"})
        assert create(service, again).status_code == 201
        assert wait_built(service, again)["state"] == "done"
        frame = service.db.AnnotationFrame.find_one({"taskId": version.tasks[0]["_id"], "frameId": 1})
        assert decode(stored(service, frame["imageUrl"])).shape[:2] == (240, 320), change


def objects(service) -> dict[str, bytes]:
    root = Path(service.settings.storage.url)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "dataset").rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


VOLATILE = {"awsUrl", "awsThumbnailUr", "awsExpiredDate", "awsThumbnailExpiredDate", "awsImageUrl", "awsThumbnailUrl",
            "updatedAt", "createdAt", "lastUpdatedAt", "build"}  # signed URLs carry their expiry


def without_volatile(value):
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def build_snapshot(service, version: Version) -> dict:
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    frames = [without_volatile(f) for t in version.tasks
              for f in service.db.AnnotationFrame.find({"taskId": t["_id"]}).sort("frameId", 1)]
    return {"version": without_volatile(doc), "frames": frames, "objects": objects(service)}


def test_kill_9_half_way_then_the_warm_start_ends_like_an_uninterrupted_build(make_service, mongo_uri, tmp_path):
    from tests.held_worker import HeldWorker

    service = make_service(APP_RUN_WORKERS="false")
    version = make_version(service, frames=120, per_task=30)
    assert create(service, version.id).status_code == 201
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=service.settings.mongodb.db_name, JOBS_LEASE_SECONDS="2",
                      JOBS_HEARTBEAT_SECONDS="0.5")
    # One thread builds the 4 tasks of 30 frames in turn, looking for a cancel before each frame:
    # held at its 45th look, task 1 is complete and task 2 half-way.
    victim = HeldWorker({**env, "CORES_CPU_CORES": "1"}, tmp_path / "hold", at=45, on="check")
    try:
        victim.wait_held(service.db, f"dataset:{version.id}")
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
    finally:
        victim.stop()
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    assert doc["taskStatus"]["state"] == "pending"
    assert sorted(e["state"] for e in doc["taskStatus"]["tasks"]) == ["complete", "pending", "pending", "pending"]
    root = Path(service.settings.storage.url)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.*") if not p.name.startswith(".")}
    warm = subprocess.run([sys.executable, "dataset_creation_warm_start.py"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert wait_built(service, version.id)["state"] == "done"
    # Nothing stored before the crash was written again.
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())
    resumed = build_snapshot(service, version)

    # The same version built again from nothing, without interruption: the same documents and objects.
    service.db.AnnotationDatasetVersion.update_one({"_id": version.id}, {"$unset": {
        "taskStatus": "", "exportFormats": "", "imageCount": "", "size": ""}})
    service.db.AnnotationFrame.update_many({}, {"$unset": {k: "" for k in (
        "imageUrl", "thumbnailUrl", "awsUrl", "awsThumbnailUr", "awsExpiredDate", "awsThumbnailExpiredDate")}})
    service.db.AnnotationFrame.update_many({}, {"$set": {"datasetVersions": []}})
    for task in version.tasks:
        for frame in service.db.AnnotationFrame.find({"taskId": task["_id"]}):
            split = 1 if frame["frameId"] <= 30 // 2 + 1 else 2
            service.db.AnnotationFrame.update_one({"_id": frame["_id"]}, {"$set": {
                "datasetVersions": [{"versionId": version.id, "datasetType": split}]}})
    import shutil
    shutil.rmtree(root / "dataset")
    service.services.start_workers()
    assert create(service, version.id).status_code == 201
    assert wait_built(service, version.id)["state"] == "done"
    assert build_snapshot(service, version) == resumed


def test_the_exports_take_each_image_s_size_and_boxes_from_the_build_and_a_task_built_without_them_is_built_again(
        make_service):
    """Each image's entry records its size and its boxes in its pixels as the build computed them
    (`imageBoxes`); the exports read them there, for tasks built in this attempt or an earlier one. A task
    an earlier version of the service completed has no such record: a resumed build builds it again
    (storing nothing again) and ends as an uninterrupted build."""
    import shutil

    from media_service.datasets.build import DatasetBuilder

    service = make_service(APP_RUN_WORKERS="false")
    version = make_version(service, frames=6, per_task=3)
    builder = DatasetBuilder(service.services.mongo, service.services.storage, service.settings)
    assert builder.build(version.id).tasks_built == 2
    built = build_snapshot(service, version)
    frame = service.db.AnnotationFrame.find_one({"taskId": version.tasks[0]["_id"], "frameId": 1})
    (entry,) = frame["datasetVersions"]
    assert entry["imageBoxes"] == {"width": 320, "height": 240, "boxes": [
        [60.0, 40.0, 140.0, 100.0, 1], [200.0, 120.0, 240.0, 200.0, 0], [290.0, 200.0, 320.0, 240.0, 0]]}
    turned = entry["augmentationImages"]["Rotate90"]["imageBoxes"]
    assert (turned["width"], turned["height"]) == (240, 320) and len(turned["boxes"]) == 3
    root = Path(service.settings.storage.url)
    coco = zipfile.ZipFile(root / f"dataset/{version.group}/{version.id}/exports/coco.zip")
    annotations = json.loads(coco.read("annotations/instances_train.json"))["annotations"]
    assert {"bbox": [60.0, 40.0, 80.0, 60.0], "area": 4800.0} in [
        {"bbox": a["bbox"], "area": a["area"]} for a in annotations]  # as built, not read back from the label text

    def resume(recorded: bool) -> int:
        """The version as a crash left it: the first task complete (recorded or not), the second pending."""
        old, pending = version.tasks
        if not recorded:
            for frame in service.db.AnnotationFrame.find({"taskId": old["_id"]}):
                augs = frame["datasetVersions"][0]["augmentationImages"]
                service.db.AnnotationFrame.update_one({"_id": frame["_id"]}, {"$unset": {
                    "datasetVersions.0.imageBoxes": "",
                    **{f"datasetVersions.0.augmentationImages.{aug}.imageBoxes": "" for aug in augs}}})
        service.db.AnnotationDatasetVersion.update_one(
            {"_id": version.id, "taskStatus.tasks.task": str(pending["_id"])},
            {"$set": {"taskStatus.state": "pending", "taskStatus.tasks.$.state": "pending"}})
        shutil.rmtree(root / f"dataset/{version.group}/{version.id}")  # the exports were not made yet
        stored = {p: p.stat().st_mtime_ns for p in (root / f"dataset/{version.group}").rglob("*.*")}
        result = builder.build(version.id)
        assert all(path.stat().st_mtime_ns == mtime for path, mtime in stored.items()) and result.writes == 0
        assert build_snapshot(service, version) == built
        return result.tasks_built

    assert resume(recorded=True) == 1
    assert resume(recorded=False) == 2


def test_bad_unknown_and_empty_versions_and_missing_videos_are_clear_errors(make_service):
    service = make_service()
    for raw, status in (("zz", 400), ("6127d7b6cb8d74adc903eeb9\n", 400), (str(ObjectId()), 404)):
        answer = post_node(f"{service.url}/api/createDataSet", {"data_version_id": raw, "auth_key": NODE_KEY})
        assert answer.status_code == status, raw
    assert create(service, ObjectId(), key="wrong-key-x").status_code == 401
    empty = ObjectId()
    service.db.AnnotationDatasetVersion.insert_one({"_id": empty, "dataSetGroupId": ObjectId(), "taskList": []})
    answer = create(service, empty)
    assert answer.status_code == 400 and "no tasks" in answer.json()["message"]
    assert service.db.ProcessingJob.count_documents({}) == 0

    version = make_version(service)
    missing = version.tasks[1]
    (Path(service.settings.storage.url) / missing["S3_url"]).unlink()  # its video is gone
    assert create(service, version.id).status_code == 201
    job = wait_built(service, version.id)
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    assert job["state"] == "failed" and job["attempts"] == 1  # retrying cannot bring the video back
    assert doc["taskStatus"]["state"] == "failed" and str(missing["_id"]) in doc["taskStatus"]["error"]
    assert "is missing" in doc["taskStatus"]["error"]
    entry = next(e for e in doc["taskStatus"]["tasks"] if e["task"] == str(missing["_id"]))
    assert entry["state"] == "pending" and "is missing" in entry["error"]
    # Nothing else harmed: the other task is built, the task docs and frames are as they were.
    assert next(e for e in doc["taskStatus"]["tasks"] if e["task"] == str(version.tasks[0]["_id"]))["state"] \
        == "complete"
    assert service.db.AnnotationTask.count_documents({}) == 2 and service.db.AnnotationFrame.count_documents({}) == 10


def test_the_same_build_against_a_real_s3_server(make_service, s3_server):
    from tests.s3_server import BUCKET, S3_PORT

    service = make_service(STORAGE_URL=f"s3://{BUCKET}/ds-test", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret")
    version = make_version(service, frames=6, per_task=3)
    assert create(service, version.id).status_code == 201
    assert wait_built(service, version.id)["state"] == "done"
    listing = s3_server.list_objects_v2(Bucket=BUCKET, Prefix=f"ds-test/dataset/{version.group}/")
    stored_keys = {obj["Key"] for obj in listing.get("Contents", [])}
    frame = service.db.AnnotationFrame.find_one({"taskId": version.tasks[0]["_id"], "frameId": 1})
    assert frame["imageUrl"] in stored_keys and frame["thumbnailUrl"] in stored_keys  # full keys (CONTRACT §2)
    assert len(stored_keys) == 6 * 4 * 3 + 3  # (image, thumbnail, labels) x (frame + 3 augmentations), 3 zips
    fetched = requests.get(frame["awsUrl"], timeout=10)  # the presigned URL works as it is
    assert fetched.status_code == 200 and decode(fetched.content).shape[:2] == (240, 320)
    assert "X-Amz-Expires=604800" in frame["awsUrl"]
    aug_url = frame["datasetVersions"][0]["augmentationImages"]["GaussianBlur"]["awsImageUrl"]
    assert requests.get(aug_url, timeout=10).status_code == 200

    # Every key written to a document opens the way Node opens it: presigned as it is, in the bucket.
    doc_keys = written_keys(service, version)
    assert len(doc_keys) == 2 + 6 * 4 * 3 + 3  # 2 task videos, every image, thumbnail and label file, 3 zips
    for key in doc_keys:
        url = s3_server.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
        assert key.startswith("ds-test/") and requests.get(url, timeout=10).status_code == 200, key


def written_keys(service, version: Version) -> set[str]:
    """Every object key the service wrote into MongoDB for this version and its tasks."""
    task_ids = {"$in": [task["_id"] for task in version.tasks]}
    keys = {task["S3_url"] for task in service.db.AnnotationTask.find({"_id": task_ids})}
    for frame in service.db.AnnotationFrame.find({"taskId": task_ids}):
        keys |= {frame["imageUrl"], frame["thumbnailUrl"]}
        for entry in frame["datasetVersions"]:
            keys |= set(entry["textFiles"].values())
            for files in entry["augmentationImages"].values():
                keys |= {files["imageUrl"], files["thumbnailUrl"], *files["textFiles"].values()}
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    keys |= {doc["exportFormats"]["YOLO"]["file"], doc["exportFormats"]["YOLO"]["sample"],
             doc["exportFormats"]["COCO"]["file"]}
    return keys


class CountedReads:
    """The service's storage, recording which dataset objects are read back."""

    def __init__(self, inner):
        self.inner, self.reads = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_file(self, key: str, path: Path) -> None:
        self._note(key)
        self.inner.get_file(key, path)

    def get_bytes(self, key: str) -> bytes:
        self._note(key)
        return self.inner.get_bytes(key)

    def _note(self, key: str) -> None:
        if key.startswith("dataset/"):
            self.reads.append(key)


def test_on_s3_the_exports_read_the_build_s_own_copies_and_fetch_only_what_is_not_there(make_service, s3_server):
    import shutil

    from media_service.datasets.build import DatasetBuilder
    from tests.s3_server import BUCKET, S3_PORT

    service = make_service(STORAGE_URL=f"s3://{BUCKET}/ds-cache", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret")
    storage = CountedReads(service.services.storage)
    builder = DatasetBuilder(service.services.mongo, storage, service.settings)
    task_base = service.settings.folders.path("task_base")
    cached = make_version(service, frames=6, per_task=3)
    builder.build(cached.id)
    assert storage.reads == []  # every image and label file of the exports came from the build's copies
    assert not list(task_base.glob("dataset-*-objects"))  # and the copies are gone

    uncached = make_version(service, frames=6, per_task=3)

    def forget_the_copies(fraction, stage):  # as if the tasks had been built on another host
        if stage == "exports":
            shutil.rmtree(next(task_base.glob(f"dataset-{uncached.id}-*-objects")))

    builder.build(uncached.id, progress=forget_the_copies)
    images = [key for key in storage.reads if key.endswith(".jpg")]
    assert len(images) == len(set(images)) == 6 * 4  # the image of each frame and augmentation, once
    # The version's own label files only for the frames samples.zip holds: the exports write theirs.
    samples_key = f"ds-cache/dataset/{uncached.group}/{uncached.id}/samples.zip"
    samples = zipfile.ZipFile(io.BytesIO(s3_server.get_object(Bucket=BUCKET, Key=samples_key)["Body"].read()))
    sampled_labels = [name for name in samples.namelist() if name.startswith("labels/") and name.endswith(".txt")]
    assert sampled_labels and len(storage.reads) - len(images) == len(sampled_labels)

    for version in (cached, uncached):
        key = f"ds-cache/dataset/{version.group}/{version.id}/exports/yolo.zip"
        archive = zipfile.ZipFile(io.BytesIO(s3_server.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        in_zip = sorted(archive.read(n) for n in archive.namelist() if n.startswith("images/") and n.endswith(".jpg"))
        frames = service.db.AnnotationFrame.find({"taskId": {"$in": [task["_id"] for task in version.tasks]}})
        image_keys = [key for frame in frames
                      for key in [frame["imageUrl"]] + [files["imageUrl"] for files in
                                                         frame["datasetVersions"][0]["augmentationImages"].values()]]
        assert len(image_keys) == 6 * 4
        storage = service.services.storage
        assert in_zip == sorted(storage.get_bytes(storage.own_key(key)) for key in image_keys)


def test_dataset_processor_builds_and_tells_outcomes_apart_by_exit_code(make_service, mongo_uri, tmp_path):
    service = make_service(APP_RUN_WORKERS="false")
    version = make_version(service, frames=4, per_task=4)
    env = {**os.environ, **service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=service.settings.mongodb.db_name)}

    def run(*args):
        return subprocess.run(["./dataset_processor.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)

    assert run("--help").returncode == 0
    assert run("-v", "zz").returncode == 2
    assert run("-v", str(ObjectId())).returncode == 2
    built = run("-v", str(version.id))
    assert built.returncode == 0, built.stderr[-2000:]
    assert f"dataset version {version.id} built: 1 tasks" in built.stdout and "16 images" in built.stdout
    again = run("-v", str(version.id))
    assert again.returncode == 3 and "already complete" in again.stdout
    service.db.AnnotationDatasetVersion.update_one({"_id": version.id}, {"$unset": {"taskStatus": ""}})
    (Path(service.settings.storage.url) / version.tasks[0]["S3_url"]).unlink()
    failed = run("-v", str(version.id))
    assert failed.returncode == 1 and "is missing" in failed.stderr


def test_node_starts_a_build_without_a_key_from_a_trusted_network_and_only_that(make_service):
    """Node sends only data_version_id (CONTRACT §1): accepted from `[App] keyless_networks`
    (loopback by default); a wrong key is refused everywhere, and no other route is keyless."""
    service = make_service()
    version = make_version(service)
    answer = post_node(f"{service.url}/api/createDataSet", {"data_version_id": str(version.id)})
    assert answer.status_code == 201, answer.text
    assert wait_built(service, version.id)["state"] == "done"
    assert create(service, version.id, key="wrong-key-x").status_code == 401
    client = service.app.test_client()
    fields = {"data_version_id": str(version.id)}
    assert client.post("/api/createDataSet", data=fields, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 401
    mapped = client.post("/api/createDataSet", data=fields, environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"})
    assert mapped.status_code == 200 and mapped.json["state"] == "complete"
    upload_id = str(version.tasks[0]["uploadId"])
    assert requests.post(f"{service.url}/api/processContent/cancel", data={"upload_id": upload_id}).status_code == 401
    assert requests.get(f"{service.url}/api/processContent/status", params={"upload_id": upload_id}).status_code == 401
    content = requests.post(f"{service.url}/api/processContent", data={"upload_id": upload_id})
    assert content.status_code == 401


def test_keyless_networks_are_the_operators_choice(make_service):
    service = make_service(APP_KEYLESS_NETWORKS="10.20.0.0/16")  # the Node host's network, not loopback
    client = service.app.test_client()
    unknown = {"data_version_id": str(ObjectId())}
    assert client.post("/api/createDataSet", data=unknown, environ_base={"REMOTE_ADDR": "10.20.3.4"}).status_code == 404
    assert client.post("/api/createDataSet", data=unknown, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 401
    assert client.post("/api/createDataSet", data=unknown,
                       environ_base={"REMOTE_ADDR": "10.21.0.1"}).status_code == 401


def test_an_augmentation_id_the_service_does_not_know_fails_the_build_at_once_naming_it(make_service):
    service = make_service()
    version = make_version(service, augmentationTypes={"IMAGE_LEVEL": [
        {"id": "FLIP", "properties": [{"id": "FLIP_HORIZONTAL", "values": [True]}]},
        {"id": "FX", "properties": [{"id": "SPARKLE", "values": [True]}]}], "BOUNDING_BOX_LEVEL": []})
    assert create(service, version.id).status_code == 201
    job = wait_built(service, version.id)
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    assert job["state"] == "failed" and job["attempts"] == 1, job  # no retry can make the id known
    assert "SPARKLE" in job["last_error"] and "aug_map" in job["last_error"]
    assert not list((Path(service.settings.storage.url) / "dataset").rglob("*.jpg"))  # nothing was built
    assert (doc.get("taskStatus") or {}).get("state") != "complete"
