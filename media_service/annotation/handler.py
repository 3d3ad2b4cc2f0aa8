"""Auto-annotation jobs: request_type 2 (the `annotation` kind: new boxes on the tasks a video
already has), and the annotator the content job uses for request_type 1.

Request type 2 reads each stored task video back from storage, detects on every frame, and
replaces in place the boxes an earlier auto-annotation wrote, never a box a person drew or
changed (`contract.is_untouched_auto_box`). One task is one commit: frame docs, then the task's
`AutoAnnotationVersion`, then the checkpoint (with the tracks so far); a resumed run starts at the
next task, and a task already at this version is read and tracked but not written (its boxes keep
the ids they were given). The tasks run in order, so tracks link across them as in request type 1.
No frame doc is ever added or removed. Progress (and its ETA) moves with each batch of frames
detected, by the frames of all the tasks, between commits.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass

from media_service import media as vp
from media_service.annotation.annotator import Annotator
from media_service.annotation.policy import LabelPolicy
from media_service.annotation.tracks import TrackSettings
from media_service.contract import ANNOTATION_KIND, CANCELLED_CODE, ContentJobParams, is_untouched_auto_box
from media_service.detectors.factory import annotation_detector
from media_service.detectors.labels import FACE
from media_service.errors import PlatformStateError, is_permanent
from media_service.mongo import Job, MongoManager
from media_service.redact import Redactor
from media_service.worker_pool import Checkpoint, JobContext

log = logging.getLogger(__name__)


def annotator_factory(mongo: MongoManager, settings):
    """What the content job calls for request_type 1: an annotator for this run's project and version."""
    def make(params: ContentJobParams) -> Annotator:
        policy = LabelPolicy.build(mongo.project_labels(params.project_id), settings.annotation)
        return make_annotator(annotation_detector(settings), policy, params.auto_anno_version, settings)
    return make


def make_annotator(detector, policy: LabelPolicy, version: int, settings) -> Annotator:
    """The annotator for one run: the face model runs only when the project has a face label
    (after `label_map`), which the log says once."""
    if hasattr(detector, "without_faces"):
        if policy.wants(FACE):
            log.info("the project has a face label: the face model runs on every detected frame")
        else:
            detector = detector.without_faces()
            log.info("the project has no face label: the face model is not run")
    tracking = TrackSettings(max_gap=settings.inference.track_max_gap,
                             single_score=settings.inference.track_single_score)
    return Annotator(detector, policy, version, settings.inference.detect_max_side, settings.inference.batch_size,
                     settings.inference.detect_every, tracking)


def merge_boxes(existing: list[dict], fresh: list[dict]) -> list[dict]:
    """A frame's boxes after re-annotation: every box a person drew or changed, then the new auto
    boxes, numbered after the highest id kept (ids stay unique in the frame)."""
    kept = [box for box in existing if not is_untouched_auto_box(box)]
    first = max((box.get("id") for box in kept if isinstance(box.get("id"), int)), default=-1) + 1
    merged = list(kept)
    for offset, box in enumerate(fresh):
        box = {**box, "id": first + offset, "boundaries": {**box["boundaries"], "id": first + offset}}
        merged.append(box)
    return merged


@dataclass
class AnnotationCheckpoint(Checkpoint):
    """Where a request_type 2 run resumes: the next task to annotate, the counts so far, and the
    tracks as the last committed task left them (none before the first)."""
    next_task: int = 0
    annotated: int = 0  # tasks written at this version
    skipped: int = 0    # tasks already at it (read and tracked, not written)
    tracks: dict | None = None

    @classmethod
    def from_doc(cls, doc: dict) -> "AnnotationCheckpoint":
        return cls(doc.get("next_task", 0), doc.get("annotated", 0), doc.get("skipped", 0), doc.get("tracks"))

    def to_doc(self) -> dict:
        return {"next_task": self.next_task, "annotated": self.annotated, "skipped": self.skipped,
                **({"tracks": self.tracks} if self.tracks is not None else {})}


class AnnotationJobHandler:
    kind = ANNOTATION_KIND

    def __init__(self, mongo: MongoManager, storage, settings):
        self.mongo, self.storage, self.settings = mongo, storage, settings
        self.annotators = annotator_factory(mongo, settings)
        self.redact = Redactor.from_settings(settings)

    def label(self, job: Job) -> str:
        return f"upload={job.params['upload_id']} request_type={job.params.get('request_type')}"

    def run(self, ctx: JobContext) -> None:
        params = ContentJobParams.from_doc(ctx.job.params)
        checkpoint = AnnotationCheckpoint.load(ctx)
        if not ctx.job.checkpoint:
            self.mongo.mark_upload_started(params.upload_id, params, new_run=True)
            checkpoint.save(ctx, "annotating", 0.0)
        tasks = self.mongo.video_tasks_in_order(params.project_id, params.video_name)
        if not tasks:
            raise PlatformStateError("no_tasks", f"{params.video_name} has no tasks to annotate")
        ctx.set_stage("loading the detector")  # the first run in a process loads its model files
        annotator = self.annotators(params)
        annotator.resume(checkpoint.tracks)
        scratch = self.settings.folders.path("task_base") / f"annotate-{params.upload_id}"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            self._annotate_tasks(ctx, params, tasks, checkpoint, annotator, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        ctx.stop_if_cancel_requested()
        self.mongo.mark_upload_succeeded(params.upload_id, len(tasks), {
            "request_annotation_version": params.auto_anno_version, "annotatedTasks": checkpoint.annotated,
            "skippedTasks": checkpoint.skipped, **annotator.summary()})
        ctx.report({"tasks": len(tasks), "annotated_tasks": checkpoint.annotated,
                    "skipped_tasks": checkpoint.skipped, "annotation": annotator.report()})
        log.info("annotation version %d done: %d tasks annotated, %d already at it", params.auto_anno_version,
                 checkpoint.annotated, checkpoint.skipped)

    def _annotate_tasks(self, ctx: JobContext, params: ContentJobParams, tasks: list[dict],
                        checkpoint: AnnotationCheckpoint, annotator: Annotator, scratch) -> None:
        """From the checkpoint's next task on: each task detected (progress after every batch of its
        frames), then committed (checkpoint after it)."""
        frames = [int(task.get("frameCount") or 0) or 1 for task in tasks]  # progress weighs tasks by frames

        def report(index: int, done_in_task: int) -> None:
            progress = min(99.0, 100.0 * (sum(frames[:index]) + min(done_in_task, frames[index])) / sum(frames))
            ctx.progress("annotating", progress)
            self.mongo.set_upload_progress(params.upload_id, progress, len(tasks), ctx.eta_seconds)

        for index in range(checkpoint.next_task, len(tasks)):
            ctx.check()
            task = tasks[index]
            done = (task.get("AutoAnnotationVersion") or 0) >= params.auto_anno_version
            self._annotate_task(task, annotator, scratch, params.auto_anno_version,
                                lambda frames_done, index=index: report(index, frames_done), write=not done)
            if done:  # tracked all the same, so later tasks get the ids an uninterrupted run gives
                checkpoint.skipped += 1
                log.info("%s is already at version %s: not written", task["taskName"],
                         task.get("AutoAnnotationVersion"))
            else:
                checkpoint.annotated += 1
            checkpoint.next_task, checkpoint.tracks = index + 1, annotator.state()
            progress = min(99.0, 100.0 * sum(frames[:index + 1]) / sum(frames))
            checkpoint.save(ctx, "annotating", progress)
            self.mongo.set_upload_progress(params.upload_id, progress, len(tasks), ctx.eta_seconds)
            ctx.at_commit_boundary()

    def _annotate_task(self, task: dict, annotator: Annotator, scratch, version: int, on_batch,
                       write: bool = True) -> None:
        """Detect and track a task's frames (`on_batch(frames done)` after each batch) and, with
        `write`, commit its boxes."""
        started = time.monotonic()
        video = scratch / f"{task['taskName']}.mp4"
        self.storage.get_file(self.storage.own_key(task["S3_url"]), video)
        frames = self.mongo.task_frames(task["_id"])
        batch: list = []
        added = 0
        for rgb in vp.rgb_frames(video, name=video.name):
            batch.append(rgb)
            if len(batch) == annotator.batch_size:
                annotator.add(batch, (rgb.shape[1], rgb.shape[0]))
                added, batch = added + len(batch), []
                on_batch(added)
        if batch:
            annotator.add(batch, (batch[0].shape[1], batch[0].shape[0]))
        boxes = annotator.end_task()
        video.unlink(missing_ok=True)
        if not write:
            return
        if len(boxes) != len(frames):
            raise PlatformStateError("task_mismatch", f"{task['taskName']}: the stored video has {len(boxes)} "
                                                      f"frames, the task {len(frames)} frame documents")
        self.mongo.set_frame_boxes({frame["_id"]: merge_boxes(frame.get("boxes") or [], fresh)
                                    for frame, fresh in zip(frames, boxes)})
        self.mongo.set_task_annotation_version(task["_id"], version)
        log.info("annotated %s: %d frames in %.1fs", task["taskName"], len(frames), time.monotonic() - started)

    def on_failed(self, job: Job, error: Exception, final: bool) -> None:
        if final:  # boxes already written stay (each task is whole); the upload says what happened
            reason = getattr(error, "code", None)
            self.mongo.record_upload_error(job.params["upload_id"], 422 if is_permanent(error) else 500,
                                           self.redact.text(f"{reason}: {error}" if reason else f"failed: {error}"))

    def on_cancelled(self, job: Job) -> None:
        self.mongo.record_upload_error(job.params["upload_id"], CANCELLED_CODE,
                                       "annotation was cancelled on request")
