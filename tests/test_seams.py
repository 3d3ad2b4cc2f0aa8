"""The typed seams between the features and their job documents: a `Job` read from any stored job
document (whole or projected), and each kind's checkpoint loading what earlier runs stored and
saving it back under the same field names (a resumed run after an upgrade must find its place)."""
from __future__ import annotations

from datetime import datetime

from media_service.annotation.handler import AnnotationCheckpoint
from media_service.content.checkpoint import ContentCheckpoint, CutCheckpoint
from mongo_manager import Job

AT = datetime(2026, 1, 2, 3, 4, 5)


def test_a_job_reads_every_field_the_pages_and_features_use_and_defaults_what_a_read_left_out():
    doc = {"_id": "content:1", "kind": "content", "key": "1", "params": {"upload_id": "1"}, "state": "failed",
           "stage": "failed", "progress": 42.5, "eta_seconds": 3.0, "attempts": 2, "max_attempts": 3,
           "last_error": "boom", "cancel_requested": True, "run": 4, "result": {"tasks": 2}, "waiting": True,
           "parent": "content:0", "parent_run": 2, "rank": 5, "superseded_by": "content:9", "holds": "video:p:a",
           "lease_owner": "w1", "history": [{"error": "x"}], "checkpoint": {"next_task": 3},
           "created_at": AT, "updated_at": AT, "started_at": AT, "finished_at": AT}
    job = Job.from_doc(doc)
    assert (job.id, job.kind, job.key, job.params, job.state, job.stage, job.progress, job.eta_seconds) == (
        "content:1", "content", "1", {"upload_id": "1"}, "failed", "failed", 42.5, 3.0)
    assert (job.attempts, job.max_attempts, job.last_error, job.cancel_requested, job.run, job.result) == (
        2, 3, "boom", True, 4, {"tasks": 2})
    assert (job.waiting, job.parent, job.parent_run, job.rank, job.superseded_by, job.holds, job.lease_owner) == (
        True, "content:0", 2, 5, "content:9", "video:p:a", "w1")
    assert (job.history, job.checkpoint, job.created_at, job.finished_at) == ([{"error": "x"}], {"next_task": 3},
                                                                               AT, AT)
    part = Job.from_doc({"_id": "content_part:1:1:0", "state": "done", "rank": 0, "result": {"tasks": 1}})
    assert (part.state, part.rank, part.result, part.last_error, part.params, part.history) == (
        "done", 0, {"tasks": 1}, None, {}, [])


def test_a_content_checkpoint_loads_and_saves_what_runs_stored():
    fresh = ContentCheckpoint.from_doc({})
    assert (fresh.next_task, fresh.frames_done, fresh.replaced, fresh.parts) == (0, 0, False, 0)
    stored = {"source": {"size": 10, "mtime_ns": 20}, "replaced": True, "next_task": 3, "frames_done": 45,
              "resume": {"sampled": 46, "position": 9}, "tracks": {"next_id": 4}}
    checkpoint = ContentCheckpoint.from_doc(stored)
    assert checkpoint.to_doc() == stored
    checkpoint.committed(3, 15, {"sampled": 61})
    assert (checkpoint.next_task, checkpoint.frames_done, checkpoint.resume) == (4, 60, {"sampled": 61})
    waiting = {"source": {"size": 10, "mtime_ns": 20}, "replaced": True, "next_task": 0, "frames_done": 0,
               "parts": 3, "planned_tasks": 40, "planned_frames": 800, "renamed_tracks": [[9, 2]]}
    assert ContentCheckpoint.from_doc(waiting).to_doc() == waiting
    images = {"replaced": True, "next_task": 1, "frames_done": 5, "resume": {"position": 5}}
    assert ContentCheckpoint.from_doc(images).to_doc() == images  # no source: never a null stored for it


def test_a_part_and_an_annotation_checkpoint_load_and_save_what_runs_stored():
    part = {"next_task": 17, "frames_done": 150, "resume": {"sampled": 300}, "tracks": {"next_id": 20001}}
    assert CutCheckpoint.from_doc(part).to_doc() == part
    first = {"next_task": 0, "annotated": 0, "skipped": 0}
    assert AnnotationCheckpoint.from_doc(first).to_doc() == first  # no tracks before the first task
    later = {"next_task": 2, "annotated": 1, "skipped": 1, "tracks": {"next_id": 3, "frame": 9}}
    assert AnnotationCheckpoint.from_doc(later).to_doc() == later
