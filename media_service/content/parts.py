"""One long upload cut by many workers (issue 31).

When an upload plans more tasks than `[Content] tasks_per_part` and its timestamps can plan the
decode (`video_processor.splittable`), its content job plans the sampled frames from the packets'
timestamps (`video_processor.plan_parts`) and queues one `content_part` job per run of tasks, each a
child of the content job (`parent`), ranked by its place so that other uploads' jobs interleave. Any
worker on any host claims a part: it seeks to the keyframe before its first frame, cuts its tasks
(the same names, frame numbers, documents and keys a single job writes) and commits each with its
own checkpoint. The content job meanwhile waits (queued, woken when a part ends); once every part is
done it checks that every planned task is there and publishes the upload, once. A part that fails
for good fails the upload with its error and stops the others; a cancel reaches every part; each
part removes its own tasks when it fails or is cancelled, so a commit that raced the end is undone.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Iterator

from media_service import contract, platform_docs
from media_service import media as vp
from media_service.content.checkpoint import ContentCheckpoint, CutCheckpoint
from media_service.contract import (
    ACTIVE_STATES,
    CONTENT_PART_KIND,
    ContentJobParams,
    ContentPartParams,
    content_part_job_id,
    task_name,
)
from media_service.errors import PartFailed
from media_service.mongo import Job, MongoManager, utcnow
from media_service.paths import ConfinedFile
from media_service.worker_pool import JobWaiting

log = logging.getLogger(__name__)

# Track ids of part n start at n * this + 1, so that parts number their tracks apart; where a track
# crosses into the next part, that part's id for it becomes the earlier one's (`link_tracks`).
TRACK_IDS_PER_PART = 1_000_000


@dataclass(frozen=True)
class Split:
    """What the content job learnt from the probe to queue the parts."""
    parts: list[vp.Part]
    info: vp.MediaInfo
    size: tuple[int, int]
    source: dict  # the source's size and mtime_ns


def split_for(settings, params: ContentJobParams, info: vp.MediaInfo, mode: str, size: tuple[int, int],
              source: dict, expected_frames: int) -> Split | None:
    """The parts of this upload, or None to cut it as one job (the log says why when it is long)."""
    per_part = settings.content.tasks_per_part
    planned_tasks = math.ceil(expected_frames / params.frames_per_task)
    if per_part <= 0 or planned_tasks <= per_part:
        return None
    why = vp.splittable(info) if mode == "timestamp" else f"{mode} sampling decides each frame in order"
    if why:
        log.info("cut as one job though it plans %d tasks (more than [Content] tasks_per_part %d): %s",
                 planned_tasks, per_part, why)
        return None
    parts = vp.plan_parts(info, params.frame_rate, params.frames_per_task, per_part)
    return Split(parts, info, size, source) if len(parts) > 1 else None


class UploadParts:
    """The content job's side: queue the parts, wait for them, publish the upload once."""

    def __init__(self, mongo: MongoManager, settings):
        self.mongo, self.settings = mongo, settings

    def queue(self, ctx, params: ContentJobParams, split: Split, checkpoint: ContentCheckpoint) -> None:
        """Queue every part not queued yet (a run cut short here queues the rest), record them in the
        checkpoint, and wait."""
        planned_frames = sum(part.frames for part in split.parts)
        planned_tasks = sum(part.tasks for part in split.parts)
        self.mongo.jobs.forget_earlier_children(ctx.job.id, ctx.job.run)
        ids = [content_part_job_id(params.upload_id, ctx.job.run, part.index) for part in split.parts]
        existing = self.mongo.jobs.existing(ids)
        info_doc = vp.media_info_doc(split.info)
        for part, job_id in zip(split.parts, ids):
            if job_id in existing:
                continue
            part_params = ContentPartParams(params.to_doc(), part.to_doc(), info_doc, list(split.size), split.source,
                                            planned_tasks, planned_frames, utcnow())
            self.mongo.jobs.enqueue(job_id, CONTENT_PART_KIND, str(params.upload_id), part_params.to_doc(),
                                    self.settings.jobs.max_attempts, parent=(ctx.job.id, ctx.job.run),
                                    rank=part.index)
        log.info("cut in %d parts of up to %d tasks (%d tasks, %d frames), for any worker", len(split.parts),
                 self.settings.content.tasks_per_part, planned_tasks, planned_frames)
        checkpoint.parts, checkpoint.planned_tasks, checkpoint.planned_frames = (len(split.parts), planned_tasks,
                                                                                 planned_frames)
        checkpoint.save(ctx, "parts", 0.0)
        raise JobWaiting(self.settings.jobs.lease_seconds, f"parts: 0 of {len(split.parts)} done")

    def gather(self, ctx, params: ContentJobParams, checkpoint: ContentCheckpoint) -> dict:
        """Once every part is done and every planned task is there: the upload's summary (the caller
        publishes it). Until then the content job waits; a part that failed for good fails it."""
        parts = self.mongo.jobs.children(ctx.job.id, ctx.job.run)
        if len(parts) != checkpoint.parts:
            raise RuntimeError(f"{len(parts)} of the {checkpoint.parts} parts are queued")
        ended_badly = next((part for part in parts if part.state in ("failed", "cancelled")), None)
        active = [part for part in parts if part.state in ACTIVE_STATES]
        if ended_badly is not None:
            for part in active:
                self.mongo.jobs.request_cancel(part.id)
            if not active:
                raise PartFailed(*_code_and_message(ended_badly))
        if active:
            done = len(parts) - len(active)
            raise JobWaiting(self.settings.jobs.lease_seconds,
                             f"parts: {done} of {len(parts)} done" if ended_badly is None
                             else f"parts: stopping {len(active)} after part {ended_badly.rank} failed")
        names = set(self.mongo.upload_task_names(params.upload_id))
        missing = [i for i in range(checkpoint.planned_tasks) if task_name(i, params.video_name) not in names]
        if missing or len(names) != checkpoint.planned_tasks:
            raise PartFailed("parts_incomplete", f"every part is done but {len(missing)} planned tasks are missing "
                                                 f"(first: {missing[:3]}) and {len(names)} tasks exist")
        frames = checkpoint.planned_frames
        summary = {"tasks": checkpoint.planned_tasks, "frames": frames, "parts": len(parts),
                   "sampling": {"mode": "timestamp", "sampled": frames, "kept": frames}}
        if params.request_type == contract.RequestType.TASKS_AND_ANNOTATIONS:
            # Counted from the documents: a part resumed after a crash reports only what it did since.
            reports = [r for r in ((part.result or {}).get("annotation") for part in parts) if r]
            summary["annotation"] = {"model": reports[0]["model"] if reports else "", "frames": frames,
                                     "boxes": self.mongo.upload_box_count(params.upload_id),
                                     "labels_left_out": _added(r["labels_left_out"] for r in reports),
                                     "tracks_linked": self.link_tracks(ctx, params, parts, checkpoint)}
        return summary

    def link_tracks(self, ctx, params: ContentJobParams, parts: list[Job], checkpoint: ContentCheckpoint) -> int:
        """A track that crosses from one part into the next keeps the earlier part's id: at each
        boundary the boxes of the last frame before it and the first frame after it (both detected)
        are matched by label and overlap, and the later part's ids are renamed in its frame docs.
        The renaming is worked out once and kept in the checkpoint: a run cut short renames the same."""
        tasks = {task["taskName"]: task["_id"] for task in self.mongo.upload_tasks(params.upload_id)}
        ids = [tasks[task_name(i, params.video_name)] for i in range(checkpoint.planned_tasks)]
        parts = self.mongo.jobs.children(ctx.job.id, ctx.job.run, with_params=True)
        firsts = [ContentPartParams.from_doc(part.params).part["first_task"] for part in parts[1:]]
        if checkpoint.renamed_tracks is None:
            renamed: dict[int, int] = {}
            for first in firsts:
                before, after = self.mongo.task_frames(ids[first - 1])[-1], self.mongo.task_frames(ids[first])[0]
                for later, earlier in continuing_tracks(before.get("boxes") or [], after.get("boxes") or []):
                    renamed[later] = renamed.get(earlier, earlier)
            checkpoint.renamed_tracks = sorted(renamed.items())
            checkpoint.save(ctx, "linking tracks", 99.0)
        renamed = dict(checkpoint.renamed_tracks)
        for task_id in ids[firsts[0]:] if renamed else ():
            changed = {}
            for frame in self.mongo.task_frames(task_id):
                boxes = frame.get("boxes") or []
                if any(box.get("trackId") in renamed for box in boxes):
                    changed[frame["_id"]] = [{**box, "trackId": renamed[box["trackId"]]}
                                             if box.get("trackId") in renamed else box for box in boxes]
            self.mongo.set_frame_boxes(changed)
        log.info("tracks linked across %d part boundaries: %d continue an earlier part's", len(firsts), len(renamed))
        return len(renamed)


def continuing_tracks(before: list[dict], after: list[dict], min_iou: float = 0.1) -> list[tuple[int, int]]:
    """(id after, id before) for the auto boxes of two neighbouring frames that are the same object:
    the same label, overlapping at least `min_iou`, best overlaps first, each box once. (At 0.1 the
    parts of vtest.avi at 5 fps kept 114 of the 117 ids one job keeps across 19 boundaries; at 0.3,
    106: pedestrians move about their width between two sampled frames; bench/README.md.)"""
    def rect(box: dict) -> tuple[str, float, float, float, float]:
        b = box["boundaries"]
        return b["label"], b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]

    def iou(a, b) -> float:
        width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        height = max(0.0, min(a[4], b[4]) - max(a[2], b[2]))
        inter = width * height
        union = (a[3] - a[1]) * (a[4] - a[2]) + (b[3] - b[1]) * (b[4] - b[2]) - inter
        return inter / union if union > 0 else 0.0

    tracked_before = [(box["trackId"], rect(box)) for box in before if isinstance(box.get("trackId"), int)]
    tracked_after = [(box["trackId"], rect(box)) for box in after if isinstance(box.get("trackId"), int)]
    pairs = sorted(((iou(a, b), i, j) for i, (_, a) in enumerate(tracked_after)
                    for j, (_, b) in enumerate(tracked_before) if a[0] == b[0]), reverse=True)
    used_after, used_before, linked = set(), set(), []
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i not in used_after and j not in used_before:
            used_after.add(i)
            used_before.add(j)
            linked.append((tracked_after[i][0], tracked_before[j][0]))
    return linked


def upload_fields(summary: dict) -> dict:
    """What the upload doc says of the parts' auto-annotation (as one job's annotator writes it)."""
    annotation = summary.get("annotation")
    if not annotation:
        return {}
    return platform_docs.annotation_upload_fields(annotation["model"], annotation["frames"], annotation["boxes"],
                                                  annotation["labels_left_out"])


def _added(counts) -> dict:
    total: dict = {}
    for count in counts:
        for label, n in count.items():
            total[label] = total.get(label, 0) + n
    return total


def _code_and_message(part: Job) -> tuple[str, str]:
    error = part.last_error or part.state
    code, sep, message = error.partition(": ")
    where = f"part {part.rank + 1}"
    return (code, f"{where}: {message}") if sep and code.replace("_", "").isalnum() else ("part_failed",
                                                                                           f"{where}: {error}")


class PartRun:
    """One part, through the content pipeline's own cutting and committing."""

    def __init__(self, pipeline, mongo: MongoManager, settings):
        self.pipeline, self.mongo, self.settings = pipeline, mongo, settings

    def run(self, ctx, params: ContentPartParams) -> dict:
        content = ContentJobParams.from_doc(params.content)
        part = vp.Part.from_doc(params.part)
        checkpoint = CutCheckpoint.load(ctx) if ctx.job.checkpoint else CutCheckpoint(next_task=part.first_task)
        if checkpoint.next_task >= part.first_task + part.tasks:  # every task committed before a crash
            return {"tasks": part.tasks, "frames": checkpoint.frames_done}
        root = self.settings.content_root()
        opened = ConfinedFile(root.root, root.resolve(content.content_path))
        try:
            if (opened.fingerprint.size, opened.fingerprint.mtime_ns) != (params.source["size"],
                                                                          params.source["mtime_ns"]):
                raise vp.MediaError("source_changed", f"{opened.name} changed since this upload's parts were planned")
            plan, stats = self._plan(ctx, params, content, part, opened, checkpoint)
            annotator = self.pipeline.annotator_for(content, checkpoint)
            if annotator is not None and not checkpoint.tracks:
                annotator.number_tracks_from(part.index * TRACK_IDS_PER_PART + 1)
            try:
                self.pipeline.cut_tasks(ctx, content, plan, checkpoint, annotator)
            finally:
                plan.close()
            if opened.changed():
                raise vp.MediaError("source_changed", f"{opened.name} was changed while it was being processed")
        finally:
            opened.close()
        if stats.refused or stats.corrupt or stats.stopped_by:
            raise vp.MediaError("frames_lost", f"{opened.name}: part {part.index + 1} met damaged packets "
                                               f"({stats.refused} refused, {stats.corrupt} corrupt)")
        return {"tasks": checkpoint.next_task - part.first_task, "frames": checkpoint.frames_done,
                **({"annotation": annotator.report()} if annotator else {})}

    def _plan(self, ctx, params: ContentPartParams, content: ContentJobParams, part: vp.Part,
              opened: ConfinedFile, checkpoint: CutCheckpoint):
        from media_service.content.pipeline import Frame, Plan

        info = part.media_info(vp.media_info_from_doc(params.media_info))
        size = tuple(params.size)
        sampler = vp.Sampler(content.frame_rate, "timestamp", info.average_fps)
        resume = vp.ResumePoint.from_doc(checkpoint.resume) or part.start
        if resume:
            sampler.resume_from(resume)
        stats = vp.DecodeStats()
        prefetch = vp.Prefetcher(vp.decode_samples(opened.path, sampler, info, resume, stats, opened.name))
        first_sampled = part.start.sampled if part.start else 0

        def frames() -> Iterator:
            for sample, point in prefetch:
                if sample.number > part.last_number:  # a run resumed after the part's last task
                    return
                yield (Frame(sample.number, sample.time, vp.prepare_frame(sample.frame, info.rotation, size)),
                       point.to_doc())
                if sample.number == part.last_number:
                    return

        cut_from = {contract.SOURCE_FINGERPRINT: contract.source_fingerprint(params.source["size"],
                                                                               params.source["mtime_ns"],
                                                                               content.content_path)}
        plan = Plan(size, info.average_fps, part.frames, frames(), lambda point: point["sampled"] - first_sampled,
                    prefetch.close, task_fields=cut_from, scratch=f"part{part.index:04d}",
                    publish=lambda ctx_, index, progress: self._publish(ctx_, params, content))
        return plan, stats

    def _publish(self, ctx, params: ContentPartParams, content: ContentJobParams) -> None:
        """The upload's progress is its committed tasks over its planned ones, whichever part commits."""
        committed = len(self.mongo.upload_task_names(content.upload_id))
        progress = min(99.0, 100.0 * committed / params.planned_tasks)
        elapsed = max(0.0, time.time() - params.planned_at.timestamp())
        eta = round(elapsed * (params.planned_tasks - committed) / committed, 1) if committed else None
        self.mongo.set_upload_progress(content.upload_id, progress, committed, eta)
        self.mongo.jobs.share_progress(contract.content_job_id(content.upload_id), progress, eta,
                                       f"parts: {committed} of {params.planned_tasks} tasks committed")

    def remove_own_tasks(self, params: ContentPartParams) -> int:
        """This part's tasks (a failed or cancelled part; a commit that raced its end included)."""
        content = ContentJobParams.from_doc(params.content)
        part = vp.Part.from_doc(params.part)
        names = {task_name(i, content.video_name) for i in range(part.first_task, part.first_task + part.tasks)}
        return self.pipeline.remove_video_tasks(content.project_id, content.video_name, content.upload_id,
                                                names=names)
