"""The documents the platform reads, built in one place (media_service/platform_docs.py): their field
names, in Node's spelling and in the order they were always written, and their values. The end-to-end
tests (test_pipeline, test_annotation, test_parts) check the same documents as stored."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bson import ObjectId

from media_service import platform_docs
from media_service.contract import ContentJobParams

NOW = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc)


@dataclass
class Frame:
    number: int
    time: float
    placement: dict | None = None
    boxes: list = None


def params(**changes) -> ContentJobParams:
    fields = dict(upload_id=ObjectId(), project_id=ObjectId(), frame_rate=5, force_write=0, request_type=0,
                  content_type=1, auto_anno_version=0, frames_per_task=120, content_path="clips/a.mp4",
                  source="/content/clips/a.mp4", video_name="a")
    return ContentJobParams(**{**fields, **changes})


def test_a_task_document_and_its_frames():
    job = params()
    frames = [Frame(0, 0.0, boxes=[]), Frame(6, 0.2002, boxes=[{"id": 0}]), Frame(12, 0.4004, boxes=[])]
    task = platform_docs.task_doc(job, "task-0-a", frames, 29.97, (640, 360), Path("/tasks/t.mp4"), "contents/k.mp4",
                                  0, NOW, {"sourceFingerprint": {"size": 1, "mtime_ns": 2}})
    assert list(task.items()) == [
        ("projectId", job.project_id), ("uploadId", job.upload_id), ("taskName", "task-0-a"), ("videoName", "a"),
        ("frameStart", 0), ("frameEnd", 12), ("frameStartTime", 0.0), ("frameCount", 3),
        ("original_frames", [0, 6, 12]), ("frameRate", 5), ("Originalframerate", 29.97), ("skipFrameCount", 5.994),
        ("videoResolutionWidth", 640), ("videoResolutionHeight", 360), ("videoDuration", "0:00:01"),
        ("videoPath", "/tasks/t.mp4"), ("S3_url", "contents/k.mp4"), ("status", 0), ("auditStatus", 0),
        ("taskStatus", 0), ("completedFrames", 0), ("AutoAnnotationVersion", 0), ("datasetVersions", []),
        ("createdAt", NOW), ("sourceFingerprint", {"size": 1, "mtime_ns": 2})]
    assert platform_docs.frame_docs(frames)[1] == {"frameId": 2, "status": 0, "boxes": [{"id": 0}],
                                                   "commentBoxes": [], "isEmpty": False, "datasetVersions": []}
    assert [doc["isEmpty"] for doc in platform_docs.frame_docs(frames)] == [True, False, True]


def test_images_say_where_each_went_in_the_letterbox():
    frames = [Frame(1, 0.0, {"name": "a.jpg", "x": 0}, []), Frame(2, 0.2, {"name": "b.jpg", "x": 4}, [])]
    task = platform_docs.task_doc(params(), "task-0-a", frames, 5.0, (64, 64), Path("t.mp4"), "k", 1, NOW)
    assert task["imageFrames"] == [{"frameId": 1, "name": "a.jpg", "x": 0}, {"frameId": 2, "name": "b.jpg", "x": 4}]


def test_the_fields_written_on_an_upload():
    assert platform_docs.upload_started_fields(params(frame_rate=2, request_type=1, auto_anno_version=3), True, NOW) \
        == {"status": 0, "errorMessage": {}, "frame_rate": 2, "frames_per_task": 120, "request_type": 1,
            "request_annotation_version": 3, "updatedAt": NOW, "progress": 0, "taskCount": 0, "createdAt": NOW,
            "sourceFilePath": "clips/a.mp4"}
    assert platform_docs.upload_failed_fields(422, "bad", NOW) == {
        "status": 2, "errorMessage": {"error_code": 422, "message": "bad"}, "updatedAt": NOW}
    assert platform_docs.upload_progress_update(33.333, 4, 12.5, NOW) == {
        "$max": {"progress": 33.33, "taskCount": 4}, "$set": {"etaSeconds": 12.5, "updatedAt": NOW}}
    assert platform_docs.upload_succeeded_fields(7, {"imageCount": 3}, NOW) == {
        "status": 1, "progress": 100, "taskCount": 7, "etaSeconds": 0, "errorMessage": {}, "finishedAt": NOW,
        "updatedAt": NOW, "imageCount": 3}
    assert list(platform_docs.annotation_upload_fields("yolox", 10, 4, {}, detected=5, tracks=2)) == [
        "annotationModel", "annotatedFrames", "detectedFrames", "annotationBoxes", "annotationTracks", "labelsLeftOut"]
