"""One upload's processing: media in, committed annotation tasks out.

Each finished task is one idempotent commit, keyed by (upload, task index): stored video, task
doc, frame docs, then the job's checkpoint and the upload's progress. A resumed run starts after
the last checkpoint and ends with exactly what an uninterrupted run would have written.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import shutil
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from media_service import contract, metrics, platform_docs
from media_service import media as vp
from media_service.content import image_source, parts
from media_service.content.checkpoint import ContentCheckpoint, CutCheckpoint
from media_service.contract import ContentJobParams, ContentType, FrameAnnotator, RequestType, task_key, task_name
from media_service.errors import PathRefused, PlatformStateError
from media_service.mongo import MongoManager, utcnow
from media_service.paths import ConfinedFile

log = logging.getLogger(__name__)

VIDEO_CONTENT_TYPE = "video/mp4"
ALREADY_HAS_TASKS = "already_has_tasks"  # a failure code: the upload doc gets error_code 200


@dataclass
class Frame:
    """A frame bound for a task video, with where it came from."""
    number: int
    time: float
    picture: vp.VideoFrame
    placement: dict | None = None  # images: where the original went in the letterbox
    boxes: list[dict] = field(default_factory=list)  # request_type 1: its auto-annotation boxes


@dataclass
class Plan:
    size: tuple[int, int]
    source_fps: float
    expected_frames: int
    frames: Iterator[tuple[Frame, dict]]  # each with the resume point after it
    consumed: Callable[[dict], int]  # frames of `expected_frames` done at a resume point: progress
    close: callable = field(default=lambda: None)
    extra_upload_fields: dict = field(default_factory=dict)
    finished: callable = field(default=lambda kept: {})  # after the last frame, given the frames kept:
    task_fields: dict = field(default_factory=dict)      # checks, more upload fields; more fields on every task doc
    publish: Callable | None = None  # (ctx, task index, progress) after each commit; None: the upload's own
    split: parts.Split | None = None  # a long upload cut in parts: nothing is decoded here
    scratch: str | None = None  # a folder of its own inside the upload's scratch folder (a part's)


class ContentPipeline:
    def __init__(self, mongo: MongoManager, storage, settings,
                 annotators: Callable[[ContentJobParams], FrameAnnotator] | None = None):
        """`annotators` makes the run's annotator for request_type 1 (the annotation feature's)."""
        self.mongo = mongo
        self.storage = storage
        self.settings = settings
        self.annotators = annotators
        self.parts = parts.UploadParts(mongo, settings)

    # -- the job -----------------------------------------------------------------------------
    def run(self, ctx, params: ContentJobParams) -> None:
        checkpoint = ContentCheckpoint.load(ctx)
        if checkpoint.parts:  # cut in parts: done when they are
            summary = self.parts.gather(ctx, params, checkpoint)
            return self._publish(ctx, params, summary, parts.upload_fields(summary))
        upload_id, project_id = params.upload_id, params.project_id
        fresh = not ctx.job.checkpoint

        ctx.set_stage("probe")
        content = self.settings.content_root()
        source = content.resolve(params.content_path)  # again: what was true at the request may not be now
        if str(source) != params.source:
            log.warning("content_path now resolves to another file inside the content folder than when accepted")
        if fresh and not params.force_write:
            self._refuse_if_tasks_exist(params)
        plan = self._plan(params, content.root, source, checkpoint)
        try:
            if fresh:
                self.mongo.mark_upload_started(upload_id, params, new_run=True)
                self.mongo.add_upload_to_project(project_id, upload_id)
            if not checkpoint.replaced:
                if params.force_write:
                    self.remove_video_tasks(project_id, params.video_name)
                checkpoint.replaced, checkpoint.next_task, checkpoint.frames_done = True, 0, 0
                checkpoint.save(ctx, "tasks", 0.0)
            if plan.split is not None:
                self.parts.queue(ctx, params, plan.split, checkpoint)  # waits for them
            annotator = self.annotator_for(params, checkpoint)
            self.cut_tasks(ctx, params, plan, checkpoint, annotator)
            extra = {**plan.extra_upload_fields, **plan.finished(checkpoint.frames_done),
                     **(annotator.summary() if annotator else {})}
        finally:
            plan.close()
        task_count = checkpoint.next_task
        if task_count == 0:
            raise vp.MediaError("no_frames", f"{source.name}: no frames could be sampled")
        summary = {"tasks": task_count, "frames": checkpoint.frames_done,
                   **({"sampling": extra["sampling"]} if "sampling" in extra else {}),
                   **({"annotation": annotator.report()} if annotator else {})}
        self._publish(ctx, params, summary, extra)

    def _publish(self, ctx, params: ContentJobParams, summary: dict, extra: dict) -> None:
        """The upload is done: status 1 (after a last look for a cancel), the job's result, the source."""
        ctx.stop_if_cancel_requested()
        sampling = {"sampling": summary["sampling"]} if "sampling" in summary else {}
        self.mongo.mark_upload_succeeded(params.upload_id, summary["tasks"], {**extra, **sampling})
        ctx.report(summary)
        self._maybe_delete_source(params.content_path)
        log.info("upload done: %d tasks, %d frames", summary["tasks"], summary["frames"])

    def _refuse_if_tasks_exist(self, params: ContentJobParams) -> None:
        """Checked again under this job's hold on the video (the request's check could be stale)."""
        others = [t for t in self.mongo.find_video_tasks(params.project_id, params.video_name)
                  if str(t.get("uploadId")) != str(params.upload_id)]
        if others:
            raise PlatformStateError(ALREADY_HAS_TASKS,
                                     "this video already has tasks; send force_write 1 to replace them")

    def _plan(self, params: ContentJobParams, root: Path, source: Path, checkpoint: ContentCheckpoint) -> Plan:
        if params.content_type == ContentType.IMAGES:
            return self._plan_images(params, root, source, checkpoint)
        opened = ConfinedFile(root, source)
        try:
            return self._plan_video(params, opened, checkpoint)
        except BaseException:
            opened.close()
            raise

    def _probe_unchanged(self, opened: ConfinedFile, checkpoint: ContentCheckpoint) -> vp.MediaInfo:
        """The source's probe, once the file is known to be the one this upload's run began with."""
        # The file is read through its descriptor from here on: a swapped name changes nothing.
        if checkpoint.source is None:
            checkpoint.source = {"size": opened.fingerprint.size, "mtime_ns": opened.fingerprint.mtime_ns}
        known = checkpoint.source
        if (known["size"], known["mtime_ns"]) != (opened.fingerprint.size, opened.fingerprint.mtime_ns):
            raise vp.MediaError("source_changed", f"{opened.name} changed since this upload's run began")
        info = vp.probe_video(opened.path, self.settings.content.max_width, self.settings.content.max_height,
                              name=opened.name)
        log.info("probed %s: %s %dx%d rot=%d fps=%.3f avg=%.3f frames=%d vfr=%s audio=%s", opened.name,
                 info.codec, info.width, info.height, info.rotation, info.nominal_fps, info.average_fps,
                 info.frame_count, info.variable_frame_rate, info.has_audio)
        return info

    def _plan_video(self, params: ContentJobParams, opened: ConfinedFile, checkpoint: ContentCheckpoint) -> Plan:
        info = self._probe_unchanged(opened, checkpoint)
        known = checkpoint.source
        rate = params.frame_rate
        mode = params.sampling_mode or self.settings.content.sampling_mode
        # legacy: the old service's rule on OpenCV's CAP_PROP_FPS, the stream's nominal rate;
        # adaptive: the timestamp rule's frames less the near-duplicates of the last one kept
        legacy = mode == "legacy"
        sampler = vp.Sampler(rate, "legacy" if legacy else "timestamp",
                             info.nominal_fps if legacy else info.average_fps)
        resume = vp.ResumePoint.from_doc(checkpoint.resume)
        if resume:
            sampler.resume_from(resume)
        size = vp.output_size(info, self.settings.content.task_max_height)
        if legacy:
            expected = sampler.count(info.frame_count)
        else:
            expected = min(info.frame_count, math.floor((info.duration - 1 / info.average_fps) * rate + 1e-9) + 1)
        if resume is None:  # a long upload may be cut in parts (content/parts.py) instead
            split = parts.split_for(self.settings, params, info, mode, size, known, expected)
            if split is not None:
                return Plan(size, info.average_fps, max(expected, 1), iter(()), lambda point: 0, opened.close,
                            split=split)
        stats = vp.DecodeStats()
        samples = vp.decode_samples(opened.path, sampler, info, resume, stats, opened.name)
        judge = None
        if mode == "adaptive":
            judge = vp.NearDuplicates.from_doc(resume.near_duplicates if resume else None,
                                               self.settings.content.max_gap_seconds)
            samples = vp.leave_out_near_duplicates(samples, judge)
        left_out_before = judge.left_out if judge else 0
        prefetch = vp.Prefetcher(samples)

        def frames() -> Iterator[tuple[Frame, dict]]:
            for sample, point in prefetch:
                yield (Frame(sample.number, sample.time, vp.prepare_frame(sample.frame, info.rotation, size)),
                       point.to_doc())

        def close() -> None:
            prefetch.close()
            opened.close()

        def finished(kept: int) -> dict:
            checked = self._check_decoded(opened, info, stats)
            if judge:
                metrics.count("frames", judge.left_out - left_out_before, stage="left_out")
            log.info("%s sampling: %d of the %d frames sampled at %d fps kept", mode, kept, sampler.sampled, rate)
            return {**checked, "sampling": {"mode": mode, "sampled": sampler.sampled, "kept": kept}}

        cut_from = {contract.SOURCE_FINGERPRINT: contract.source_fingerprint(known["size"], known["mtime_ns"],
                                                                               params.content_path)}
        return Plan(size, info.average_fps, max(expected, 1), frames(), lambda point: point["sampled"], close,
                    finished=finished, task_fields=cut_from)

    def _check_decoded(self, opened: ConfinedFile, info: vp.MediaInfo, stats: vp.DecodeStats) -> dict:
        """Frames lost in decoding must not pass silently: a source that changed while it was read
        fails; a damaged one is accepted only within `[Content] max_lost_frames_percent`, and the
        upload doc then says how many frames were expected and decoded. What counts as lost is
        `vp.frame_loss`'s measure, never a header's frame count."""
        metrics.count("frames", stats.frames_seen, stage="decode")
        if opened.changed():
            raise vp.MediaError("source_changed", f"{opened.name} was changed (size or modification time) while "
                                                  "it was being processed; send it again once it is complete")
        loss = vp.frame_loss(info, stats)
        if loss is None:
            return {}
        share = 100.0 * loss.lost / loss.expected
        detail = f"decoded {loss.seen} of the {loss.expected} frames the file holds ({loss.how})"
        if share > self.settings.content.max_lost_frames_percent:
            raise vp.MediaError("frames_lost", f"{opened.name}: {detail}; at most "
                                               f"{self.settings.content.max_lost_frames_percent:g}% may be lost")
        log.warning("%s: %s; accepted (%.1f%% lost)", opened.name, detail, share)
        return {"framesExpected": loss.expected, "framesDecoded": loss.seen}

    def _plan_images(self, params: ContentJobParams, root: Path, source: Path,
                     checkpoint: ContentCheckpoint) -> Plan:
        listing = image_source.list_images(root, source, self.settings.content.image_extensions)
        readable, skipped, sizes = [], list(listing.skipped), []
        for ref in listing.images:  # a first pass for sizes: tasks of one upload share one size
            try:
                image = image_source.read_image(ref)
            except image_source.ImageError as exc:
                skipped.append({"fileName": ref.name, "error": str(exc)})
                log.warning("skipping image: %s", exc)
                continue
            readable.append(ref)
            sizes.append(image.shape[1::-1])
        for entry in listing.skipped:
            log.warning("skipping %s: %s", entry["fileName"], entry["error"])
        if not readable:
            listing.close()
            raise vp.MediaError("no_frames", f"{source.name}: no readable images")
        width, height = max(w for w, _ in sizes), max(h for _, h in sizes)
        size = vp.task_video_size(width, height, self.settings.content.task_max_height)
        rate = params.frame_rate
        start = (checkpoint.resume or {}).get("position", 0)

        def frames() -> Iterator[tuple[Frame, dict]]:
            for position in range(start, len(readable)):
                ref = readable[position]
                canvas, placement = image_source.letterbox(image_source.read_image(ref), size)
                picture = vp.frame_from_bgr(canvas)
                yield (Frame(ref.number, position / rate, picture, {"fileName": ref.name, **placement}),
                       {"position": position + 1})
        return Plan(size, float(rate), len(readable), frames(), lambda point: point["position"], listing.close,
                    extra_upload_fields={"skippedImages": skipped, "imageCount": len(readable)})

    # -- tasks -------------------------------------------------------------------------------
    @staticmethod
    def _annotates(params: ContentJobParams) -> bool:
        return params.request_type == RequestType.TASKS_AND_ANNOTATIONS

    def annotator_for(self, params: ContentJobParams, checkpoint: CutCheckpoint) -> FrameAnnotator | None:
        if not self._annotates(params):
            return None
        if self.annotators is None:
            raise RuntimeError("request_type 1 needs auto-annotation, which this worker was built without")
        annotator = self.annotators(params)
        annotator.resume(checkpoint.tracks)  # where the last committed task left the tracks
        return annotator

    def cut_tasks(self, ctx, params: ContentJobParams, plan: Plan, checkpoint: CutCheckpoint,
                   annotator: FrameAnnotator | None) -> None:
        """Encode tasks in this thread while the previous one is checked and committed in another,
        and (request_type 1) detect on one batch of frames in a third while the next batch is
        decoded and encoded.

        Commits stay in task order (one at a time), each after the detection of its frames; a
        failed commit or detection stops the encoding at once. At most one batch is being detected
        and one gathered, so memory stays flat. A task's boxes are known when its last batch is
        detected (tracks look ahead inside the task); the tracks' state then rides with the
        task's commit into its checkpoint.
        """
        scratch = self.settings.folders.path("task_base") / str(params.upload_id)
        if plan.scratch is not None:
            scratch = scratch / plan.scratch
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") as committer, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect") as detector:
            cutter = _TaskCutter(self, ctx, params, plan, checkpoint, annotator, scratch, committer, detector)
            try:
                for frame, point in plan.frames:
                    cutter.add(frame, point)
                cutter.finish()
            finally:
                cutter.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        if plan.scratch is not None:  # a part's own folder inside the upload's: that too once empty
            with contextlib.suppress(OSError):
                scratch.parent.rmdir()

    def _commit_task(self, ctx, params: ContentJobParams, plan: Plan, checkpoint: CutCheckpoint, index: int,
                     encoder: vp.TaskEncoder, frames: list[Frame], resume_point: dict) -> None:
        name = task_name(index, params.video_name)
        problems = vp.check_task_video(encoder.path).problems(len(frames), plan.size, params.frame_rate)
        if problems:
            raise RuntimeError(f"{name}: the encoded video is not what was planned: {'; '.join(problems)}")
        ctx.check()  # never write after our lease is gone
        key = task_key(params.project_id, name)
        self.storage.put_file(key, encoder.path, VIDEO_CONTENT_TYPE)
        annotation_version = params.auto_anno_version if self._annotates(params) else 0
        task = platform_docs.task_doc(params, name, frames, plan.source_fps, plan.size, encoder.path,
                                      self.storage.document_key(key), annotation_version, utcnow(), plan.task_fields)
        self.mongo.commit_task(task, platform_docs.frame_docs(frames))
        metrics.count("frames", len(frames), stage="encode")
        checkpoint.committed(index, len(frames), resume_point)
        progress = min(99.0, 100.0 * plan.consumed(resume_point) / plan.expected_frames)
        checkpoint.save(ctx, "tasks", progress)
        if plan.publish is not None:
            plan.publish(ctx, index, progress)
        else:
            self.mongo.set_upload_progress(params.upload_id, progress, index + 1, ctx.eta_seconds)
        encoder.path.unlink(missing_ok=True)
        log.info("committed %s: frames %d-%d (%d), progress %.1f%%", name, frames[0].number,
                 frames[-1].number, len(frames), progress)
        ctx.at_commit_boundary()

    # -- clean-up ----------------------------------------------------------------------------
    def remove_video_tasks(self, project_id, video_name: str, upload_id=None, names: set[str] | None = None) -> int:
        """Delete a video's tasks (of one upload, with these names): stored videos, frame docs, task
        docs; safe to repeat."""
        tasks = self.mongo.find_video_tasks(project_id, video_name)
        if upload_id is not None:
            tasks = [t for t in tasks if str(t.get("uploadId")) == str(upload_id)]
        if names is not None:
            tasks = [t for t in tasks if t.get("taskName") in names]
        for task in tasks:
            if task.get("S3_url"):
                self.storage.delete(self.storage.own_key(task["S3_url"]))
        removed = self.mongo.delete_tasks(t["_id"] for t in tasks)
        if removed:
            log.info("removed %d earlier tasks of %s", removed, video_name)
        return removed

    def _maybe_delete_source(self, content_path: str) -> None:
        if not self.settings.content.delete_source:
            return
        try:
            confirmed = self.settings.content_root().resolve(content_path)  # never outside the content folder
        except PathRefused:
            return
        if confirmed.is_dir() and not confirmed.is_symlink():
            shutil.rmtree(confirmed)
        else:
            confirmed.unlink(missing_ok=True)
        log.info("deleted the source %s as configured", confirmed.name)


class _TaskCutter:
    """One pass of `ContentPipeline.cut_tasks`: the task being encoded here, the one being
    committed in the `committer` thread, and the batch being detected in the `detector` thread."""

    def __init__(self, pipeline: ContentPipeline, ctx, params: ContentJobParams, plan: Plan, checkpoint: CutCheckpoint,
                 annotator: FrameAnnotator | None, scratch: Path, committer: ThreadPoolExecutor,
                 detector: ThreadPoolExecutor):
        self.pipeline, self.ctx, self.params, self.plan = pipeline, ctx, params, plan
        self.checkpoint, self.annotator, self.scratch = checkpoint, annotator, scratch
        self.committer, self.detector = committer, detector
        self.index = checkpoint.next_task
        self.encoder: vp.TaskEncoder | None = None
        self.frames: list[Frame] = []
        self.point: dict | None = None
        self.pending: Future | None = None  # the previous task's commit
        self.to_annotate: list[tuple[Frame, object]] = []  # (frame, how to make its RGB copy for the detector)
        self.detecting: Future | None = None  # the batch the detector is on (one at a time, in order)

    def add(self, frame: Frame, point: dict) -> None:
        self.point = point
        self.ctx.check()
        if self.pending is not None and self.pending.done():
            self.pending.result()  # raise a commit's error now, not a task later
        if self.encoder is None:
            settings = self.pipeline.settings.content
            self.encoder = vp.TaskEncoder(self.scratch / f"{task_name(self.index, self.params.video_name)}.mp4",
                                          self.plan.size, self.params.frame_rate, settings.x264_preset,
                                          settings.x264_crf)
        if self.annotator is not None:  # detected on a smaller copy, a batch at a time, made only for
            # the frames the detector sees: now for every detect_every-th, later for a task's last
            rgb = functools.partial(vp.frame_to_rgb, frame.picture, *self.annotator.input_size(self.plan.size))
            self.to_annotate.append((frame, rgb() if self.annotator.sees(len(self.frames)) else rgb))
            if len(self.to_annotate) == self.annotator.batch_size:
                self._annotate()
        self.encoder.add(frame.picture)
        frame.picture = None  # the encoder holds what it needs; free the pixels
        self.frames.append(frame)
        if len(self.frames) == self.params.frames_per_task:
            self.pending = self._hand_over()

    def finish(self) -> None:
        """The last, shorter task, then wait for every commit."""
        if self.encoder is not None:
            self.pending = self._hand_over()
        if self.pending is not None:
            self.pending.result()

    def stop(self) -> None:
        """Nothing left running behind a failed job."""
        if self.encoder is not None:
            self.encoder.abort()
        wait([f for f in (self.pending, self.detecting) if f is not None])

    def _detect(self, batch: list[tuple[Frame, object]], task: list[Frame] | None) -> dict | None:
        self.annotator.add([rgb for _, rgb in batch], self.plan.size)
        if task is None:
            return None
        for frame, found in zip(task, self.annotator.end_task()):
            frame.boxes = found
        return self.annotator.state()  # the tracks after this task, for its checkpoint

    def _annotate(self, task: list[Frame] | None = None) -> None:
        if self.detecting is not None:
            self.detecting.result()  # one batch at a time: memory stays flat, errors surface here
        self.detecting = self.detector.submit(contextvars.copy_context().run, self._detect, list(self.to_annotate),
                                              task)
        self.to_annotate.clear()

    def _commit(self, waiting_for: Future | None, *args) -> None:
        if waiting_for is not None:  # this task's frames have their boxes (batches finish in order)
            self.checkpoint.tracks = waiting_for.result()
        self.pipeline._commit_task(*args)

    def _hand_over(self) -> Future:
        if self.annotator is not None:
            self._annotate(self.frames)
        self.encoder.close()
        if self.pending is not None:
            self.pending.result()  # in order: the previous task is committed first
        # A copy of this thread's context keeps the job's label on the commit's log lines.
        future = self.committer.submit(contextvars.copy_context().run, self._commit, self.detecting, self.ctx,
                                       self.params, self.plan, self.checkpoint, self.index, self.encoder,
                                       self.frames, self.point)
        self.index, self.encoder, self.frames = self.index + 1, None, []
        return future
