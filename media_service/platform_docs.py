"""The documents the Node platform reads (CONTRACT §2), built in one place: task and frame documents,
the fields written on an upload, the boxes of auto-annotation, and the project and upload documents
Node itself creates (made the same way by the jobs page's try-it form).

Field names keep Node's spelling, misspellings included; `contract.py` holds the names and enums
these documents use. Nothing here reads or writes the database: the writers (media_service/mongo/
and the features) pass the time and the values in, and store what these functions return.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from bson import ObjectId

from media_service.contract import (
    AUTO_MARK,
    FRAMES_PER_TASK_STANDARD,
    ContentJobParams,
    ContentType,
    RequestType,
    UploadStatus,
)

# -- documents Node creates (CONTRACT §2), made the same way by the jobs page's try-it form ---------
# Colours for project labels that have none (stable per label name).
LABEL_COLORS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
                "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#aaffc3", "#000075")


def label_color(name: str) -> str:
    return LABEL_COLORS[int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(LABEL_COLORS)]


def project_doc(project_id: ObjectId, name: str, now: datetime, labels: tuple[str, ...] = ()) -> dict:
    """A new AnnotationProject, as Node creates it: no uploads yet, the labels named (`labels[].label`
    and a colour each)."""
    return {"_id": project_id, "name": name, "contentUploads": [],
            "labels": [{"label": label, "color": label_color(label)} for label in labels],
            "createdAt": now, "updatedAt": now}


def video_upload_doc(upload_id: ObjectId, project_id: ObjectId, source_file_path: str, frame_rate: int,
                     now: datetime, request_type: int = RequestType.TASKS_ONLY) -> dict:
    """A new AnnotationContentUpload of a video, as Node creates it before it calls processContent:
    processing, the standard frames a task, no force write; tasks only, or tasks plus
    auto-annotation version 1."""
    return {"_id": upload_id, "projectId": project_id, "createdAt": now, "updatedAt": now,
            "sourceFilePath": source_file_path, "progress": 0, "status": UploadStatus.PROCESSING,
            "frame_rate": frame_rate, "frames_per_task": FRAMES_PER_TASK_STANDARD,
            "content_type": ContentType.VIDEO, "force_write": 0,
            "request_annotation_version": 0 if request_type == RequestType.TASKS_ONLY else 1,
            "request_type": request_type}


# -- the fields we write on an upload (AnnotationContentUpload) ------------------------------------
def upload_started_fields(params: ContentJobParams, new_run: bool, now: datetime) -> dict:
    """Processing (status 0), the request's settings; a new run also starts progress, the task count
    and `createdAt` again."""
    fields = {
        "status": UploadStatus.PROCESSING,
        "errorMessage": {},
        "frame_rate": params.frame_rate,
        "frames_per_task": params.frames_per_task,
        "request_type": params.request_type,
        "request_annotation_version": params.auto_anno_version,
        "updatedAt": now,
    }
    if new_run:
        # As the old service did when processing began: Node's UI calls an upload timed out three
        # hours after createdAt, so a long queue must not count.
        fields.update(progress=0, taskCount=0, createdAt=now, sourceFilePath=params.content_path)
    return fields


def upload_failed_fields(error_code: int, message: str, now: datetime) -> dict:
    """Status 2 with an error the UI can show."""
    return {"status": UploadStatus.FAILED, "errorMessage": {"error_code": error_code, "message": message},
            "updatedAt": now}


def upload_progress_update(progress: float, task_count: int, eta_seconds: float | None, now: datetime) -> dict:
    """The update (not only fields): $max keeps progress and the task count from ever going backwards,
    whoever writes them (the parts of a long upload commit in any order)."""
    return {"$max": {"progress": round(float(progress), 2), "taskCount": task_count},
            "$set": {"etaSeconds": eta_seconds, "updatedAt": now}}


def upload_succeeded_fields(task_count: int, extra: dict | None, now: datetime) -> dict:
    """Status 1, all of it done, and what the run adds (sampling, auto-annotation, images skipped)."""
    return {"status": UploadStatus.SUCCEEDED, "progress": 100, "taskCount": task_count, "etaSeconds": 0,
            "errorMessage": {}, "finishedAt": now, "updatedAt": now, **(extra or {})}


def upload_reopened_fields(now: datetime) -> dict:
    """Before a retried run: processing again, no error, no progress (`finishedAt` unset beside it)."""
    return {"status": UploadStatus.PROCESSING, "errorMessage": {}, "progress": 0, "taskCount": 0, "updatedAt": now}


def annotation_upload_fields(model: str, frames: int, boxes: int, labels_left_out: dict,
                             detected: int | None = None, tracks: int | None = None,
                             rekognition_calls: int | None = None) -> dict:
    """What the upload says of its auto-annotation (the fields given; a long upload's parts know fewer)."""
    fields = {"annotationModel": model, "annotatedFrames": frames}
    if detected is not None:
        fields["detectedFrames"] = detected
    fields["annotationBoxes"] = boxes
    if tracks is not None:
        fields["annotationTracks"] = tracks
    fields["labelsLeftOut"] = labels_left_out
    if rekognition_calls is not None:
        fields["rekognitionCalls"] = rekognition_calls
    return fields


# -- task and frame documents (AnnotationTask, AnnotationFrame) ----------------------------------
def hms(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def task_doc(params: ContentJobParams, name: str, frames: list, source_fps: float, size: tuple[int, int],
             video_path: Path, s3_url: str, annotation_version: int, created_at: datetime,
             more: dict | None = None) -> dict:
    """A task cut from an upload: `frames` (each with `number`, `time` and, for images, `placement`)
    in the order of the task video, `s3_url` as the document stores it, `more` fields of ours."""
    rate = params.frame_rate
    task = {
        "projectId": params.project_id, "uploadId": params.upload_id, "taskName": name,
        "videoName": params.video_name,
        "frameStart": frames[0].number, "frameEnd": frames[-1].number,
        "frameStartTime": float(round(frames[0].time, 6)), "frameCount": len(frames),
        "original_frames": [f.number for f in frames], "frameRate": int(rate),
        "Originalframerate": float(round(source_fps, 6)),
        "skipFrameCount": float(round(source_fps / rate, 6)),
        "videoResolutionWidth": int(size[0]), "videoResolutionHeight": int(size[1]),
        "videoDuration": hms(len(frames) / rate), "videoPath": str(video_path),
        "S3_url": s3_url,
        "status": 0, "auditStatus": 0, "taskStatus": 0, "completedFrames": 0,
        "AutoAnnotationVersion": annotation_version,
        "datasetVersions": [], "createdAt": created_at, **(more or {}),
    }
    if frames[0].placement is not None:
        task["imageFrames"] = [{"frameId": i, **f.placement} for i, f in enumerate(frames, 1)]
    return task


def frame_docs(frames: list) -> list[dict]:
    """A task's frame documents, `frameId` 1 first, each with its auto-annotation `boxes` (none: empty)."""
    return [{"frameId": i, "status": 0, "boxes": f.boxes, "commentBoxes": [], "isEmpty": not f.boxes,
             "datasetVersions": []} for i, f in enumerate(frames, 1)]


def frame_boxes_fields(boxes: list[dict]) -> dict:
    """A frame's boxes replaced."""
    return {"boxes": boxes, "isEmpty": not boxes}


def auto_box(index: int, label: str, color: str, x: int, y: int, w: int, h: int, score: float, version: int,
             model: str, track_id: int | None = None) -> dict:
    """An auto-annotation box in the shape Node reads, with our mark beside it. The mark keeps the
    label and geometry as written: a box whose label or geometry no longer match was changed by a
    person, and auto-annotation never touches it again. `track_id`: the object's id in the upload
    (CONTRACT §AnnotationFrame `trackId`), the same on every box of that object."""
    box = {"id": index,
            "boundaries": {"id": index, "type": "rectangle", "label": label, "color": color,
                           "status": "completed", "isPermanent": True, "x": x, "y": y, "w": w, "h": h,
                           "attributeValues": {}, "autoLable_confidance": f"{score:.4f}"},
            "attributeValues": {"state": "Ready"},
            AUTO_MARK: {"version": version, "model": model, "wrote": [label, x, y, w, h]}}
    if track_id is not None:
        box["trackId"] = int(track_id)
    return box
