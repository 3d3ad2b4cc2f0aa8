"""Building one dataset version: the library under `dataset_processor.py -v` and `/api/createDataSet`.

The builder runs the version's tasks and says how far it got. For every task of the version's
`taskList` (several tasks at once, up to `[Cores] cpu_cores`), the stored task video is decoded
once and each frame handed to `frame_writer.TaskWriter` (images, thumbnails, label files,
augmentations); the frame docs get their keys, URLs and `datasetVersions` entry in one batched write
per task, and the task's `taskStatus` entry then says `complete` with its counts. `taskStatus` is
the record a resumed build reads: complete tasks are skipped (unless an earlier version of the
service built them without recording each image's size and boxes for the exports), and objects a
crashed attempt of the same build already stored are not written again. A task that fails is
recorded on its entry and retried by a later attempt, up to `[Dataset] task_attempts`. When every
task is complete, `export_assembly` stores the standard exports (Ultralytics YOLO, COCO) and
`samples.zip`.
"""
from __future__ import annotations

import logging
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bson import ObjectId

from media_service import media as vp
from media_service import metrics
from media_service.datasets import augment_plan, source, uploads
from media_service.datasets.export_assembly import store_exports
from media_service.datasets.frame_writer import (
    ObjectCache,
    StoredInPlace,
    TaskWriter,
    Version,
    is_recorded,
    object_cache,
    split_shares,
    version_entry,
)
from media_service.datasets.labels import LabelScheme
from media_service.errors import DatasetError, PlatformStateError, ServiceError, StorageError, is_permanent
from media_service.mongo import MongoManager, utcnow
from media_service.worker_pool import database_unavailable

log = logging.getLogger(__name__)




class TaskFailed(RuntimeError):
    """Some tasks failed this attempt (recorded on the version); a later attempt retries them."""


@dataclass
class BuildResult:
    version_id: ObjectId
    already_complete: bool = False
    tasks: int = 0
    tasks_built: int = 0
    images: int = 0
    size: int = 0
    dropped_boxes: int = 0
    writes: int = 0                       # objects stored by this run (a resumed run skips stored ones)
    exports: dict = field(default_factory=dict)


def parse_version_id(raw: str) -> ObjectId:
    try:
        if len(raw) == 24:
            return ObjectId(raw)
    except Exception:  # bson's InvalidId and TypeError alike: the same answer
        pass
    raise DatasetError("bad_id", f"{raw!r} is not a dataset version id (24 hexadecimal digits)")


def _task_ids(version: dict) -> list[ObjectId]:
    found = []
    for entry in version.get("taskList") or []:
        raw = entry.get("taskId") or entry.get("_id") or entry.get("task") if isinstance(entry, dict) else entry
        try:
            found.append(raw if isinstance(raw, ObjectId) else ObjectId(str(raw)))
        except Exception:
            raise DatasetError("bad_task_list", f"taskList holds {raw!r}, which is not a task id") from None
    return list(dict.fromkeys(found))


class DatasetBuilder:
    def __init__(self, mongo: MongoManager, storage, settings):
        self.mongo, self.storage, self.settings = mongo, storage, settings
        self.augmentation = augment_plan.AugmentationSettings.from_config(settings.augmentation)

    # -- the whole version ---------------------------------------------------------------------
    def build(self, version_id: ObjectId, check: Callable[[], None] = lambda: None,
              progress: Callable[[float, str], None] = lambda fraction, stage: None,
              before_finish: Callable[[], None] = lambda: None) -> BuildResult:
        """Build (or finish building) the version. `check` is called often (cancel, lease);
        `progress(0..1, stage)` as the build goes; `before_finish` just before it is marked complete."""
        version = self.mongo.get_dataset_version(version_id)
        if version is None:
            raise DatasetError("unknown_version", f"no dataset version {version_id}")
        if (version.get("taskStatus") or {}).get("state") == "complete":
            return BuildResult(version_id, already_complete=True, tasks=len(version["taskStatus"].get("tasks", [])))
        context, task_ids = self._start(version_id, version)
        result = BuildResult(version_id, tasks=len(task_ids))
        cache = object_cache(self.storage, self.settings.folders.path("task_base"), context)
        try:
            finished = self._tasks_then_exports(context, task_ids, result, cache, check, progress)
        except DatasetError:
            cache.remove()  # this build is over; the next one starts afresh
            raise
        cache.remove()
        before_finish()
        self._finish(version_id, finished, result)
        progress(1.0, "done")
        return result

    def _start(self, version_id: ObjectId, version: dict) -> tuple[Version, list[ObjectId]]:
        """Check what the version asks for before anything is written (an id the service does not
        know fails the build at once), then record the build as started."""
        task_ids = _task_ids(version)
        if not task_ids:
            raise DatasetError("no_tasks", f"dataset version {version_id} has no tasks in its taskList")
        group = version.get("dataSetGroupId")
        if not group:
            raise DatasetError("no_group", f"dataset version {version_id} has no dataSetGroupId")
        try:
            plan = augment_plan.requested_augmentations(version.get("augmentationTypes"), self.augmentation)
        except augment_plan.AugmentationShapeError as error:
            raise DatasetError("bad_augmentations", f"dataset version {version_id}: {error}") from None
        yolo = {"fileType": "zip", "name": "YOLO", **self.mongo.yolo_export_format()}
        version = self.mongo.start_dataset_build(version_id, [str(t) for t in task_ids],
                                                 random.SystemRandom().randrange(2**31), uuid.uuid4().hex, yolo)
        if plan.disabled:
            log.info("augmentations in disabled_augs (left out): %s", ", ".join(plan.disabled))
        return Version(version, group, LabelScheme.from_list(version.get("labelAttributeList")), plan.requests,
                       split_shares(version)), task_ids

    def _tasks_then_exports(self, context: Version, task_ids: list[ObjectId], result: BuildResult,
                            cache, check, progress) -> list[dict]:
        """Every task not yet recorded complete, then the exports; the version's task entries."""
        entries = {entry["task"]: entry for entry in context.doc["taskStatus"]["tasks"]}
        todo = [task for task in task_ids
                if entries[str(task)]["state"] != "complete" or not self._recorded(context, task)]
        sink = uploads.uploads_for(self.storage)
        try:
            failures = self._build_tasks(context, todo, entries, result, cache, sink, check, progress)
        finally:
            sink.close()
        if failures:
            raise TaskFailed(f"{len(failures)} of {len(task_ids)} tasks failed this attempt: " + "; ".join(failures))
        check()
        progress(0.9, "exports")
        version = self.mongo.get_dataset_version(context.id)
        with metrics.cpu_stage("dataset", "exports"):  # the whole process: the archives are written by a pool
            result.exports = store_exports(self.mongo, self.storage, self.settings, context,
                                           [entry["task"] for entry in version["taskStatus"]["tasks"]], cache)
        return version["taskStatus"]["tasks"]

    def _finish(self, version_id: ObjectId, finished: list[dict], result: BuildResult) -> None:
        result.images = sum(entry.get("imageCount", 0) for entry in finished)
        result.size = sum(entry.get("imageDataSize", 0) for entry in finished)
        self.mongo.finish_dataset(version_id, {
            "imageCount": result.images, "size": result.size,
            "exportFormats.YOLO.fileCount": result.exports["fileCount"],
            "exportFormats.YOLO.sample": self.storage.document_key(result.exports["sample"]),
            "exportFormats.YOLO.file": self.storage.document_key(result.exports["yolo"]),
            "exportFormats.COCO": {"fileType": "zip", "name": "COCO",
                                   "file": self.storage.document_key(result.exports["coco"]),
                                   "createdAt": utcnow()}})

    def _build_tasks(self, context: Version, todo: list[ObjectId], entries: dict, result: BuildResult,
                     cache: ObjectCache | StoredInPlace, sink, check, progress) -> list[str]:
        failures: list[str] = []
        done = len(entries) - len(todo)
        lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=self.settings.cores.worker_threads, thread_name_prefix="dataset") as pool:
            futures = {pool.submit(self._timed_task, context, task, entries[str(task)], result, cache, sink, lock,
                                   check): task for task in todo}
            for future in as_completed(futures):
                task = futures[future]
                try:
                    future.result()
                    done += 1
                    progress(0.9 * done / len(entries), "tasks")
                except DatasetError:
                    raise  # the version as a whole cannot be built (recorded by the caller)
                except Exception as exc:  # noqa: BLE001 - recorded on the task; the other tasks go on
                    if database_unavailable(exc):
                        raise  # no fault of the task: the job waits for a primary and goes on
                    failures.append(self._task_failed(context, task, entries[str(task)], exc))
        return failures

    def _task_failed(self, context: Version, task: ObjectId, entry: dict, exc: Exception) -> str:
        text = str(exc) if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
        self.mongo.set_dataset_task(context.id, str(task), {"state": "pending", "error": text}, attempt=True)
        attempts = entry.get("attempts", 0) + 1
        permanent = is_permanent(exc)
        if permanent or attempts >= self.settings.dataset.task_attempts:
            raise DatasetError("task_failed", f"task {task} failed{'' if permanent else f' {attempts} times'}: "
                                              f"{text}") from exc
        log.warning("task %s failed (attempt %d of %d): %s", task, attempts, self.settings.dataset.task_attempts,
                    text)
        return f"task {task}: {text}"

    def _recorded(self, context: Version, task: ObjectId) -> bool:
        """Whether a complete task's frames record what the exports read of each image (its size and
        boxes). A task an earlier version of the service completed has no such record: it is built
        again (the same bytes; objects this build stored already are not stored again)."""
        return all(is_recorded(entry) for frame in self.mongo.dataset_frames(task)
                   if (entry := version_entry(frame, context.id)) is not None)

    # -- one task ------------------------------------------------------------------------------
    def _timed_task(self, *args) -> None:
        """`_task`, its thread's CPU seconds by stage (decode, jpeg, thumbnail, labels, augment, urls,
        storage, database) added to `metrics.cpu_seconds("dataset")`."""
        with metrics.cpu_stages("dataset"):
            self._task(*args)

    def _task(self, context: Version, task_id: ObjectId, entry: dict, result: BuildResult,
              cache: ObjectCache | StoredInPlace, sink, lock, check) -> None:
        started = time.monotonic()
        task = self.mongo.get_task(task_id)
        if task is None or not task.get("S3_url"):
            raise StorageError(f"task {task_id} does not exist (or has no video)", permanent=True)
        hex_id = str(task_id)
        metrics.lap("database")
        # Objects this same build stored before a crash are there already: not written again.
        resumed = entry.get("build") == context.build
        stored = set(self.storage.list_keys(f"dataset/{context.group}/{hex_id}/")) if resumed else set()
        metrics.lap("storage")
        self.mongo.set_dataset_task(context.id, hex_id, {"build": context.build})
        frames = self.mongo.dataset_frames(task_id)
        scratch = self.settings.folders.path("task_base") / f"dataset-{context.id}-{hex_id}"
        scratch.mkdir(parents=True, exist_ok=True)
        metrics.lap("database")
        writer = TaskWriter(self.storage, self.settings.dataset, self.augmentation, context, hex_id, stored, cache,
                            sink)
        updates = []
        try:
            pictures = self._pictures(task, scratch)
            metrics.lap("storage")
            task_size = (task.get("videoResolutionWidth"), task.get("videoResolutionHeight"))
            decoded = 0
            for frame, rgb in zip(frames, pictures):
                metrics.lap("decode")
                check()
                decoded += 1
                updates.append((frame["_id"], *writer.frame(frame, rgb, task_size)))
            if decoded != len(frames):
                raise PlatformStateError("task_mismatch", f"task {hex_id}: its video has {decoded} frames, "
                                                          f"its frame documents {len(frames)}")
            writer.wait()  # every object stored before the frame docs and `complete` say so
        finally:
            writer.abandon()
            shutil.rmtree(scratch, ignore_errors=True)
        metrics.count("frames", len(frames), stage="dataset")
        self.mongo.set_frame_dataset_fields(context.id, updates)
        self.mongo.set_dataset_task(context.id, hex_id, {
            "state": "complete", "error": "none", "imageCount": writer.images, "imageDataSize": writer.image_bytes,
            "augmentationFileCounts": writer.counts, "droppedBoxes": writer.dropped})
        metrics.lap("database")
        with lock:
            result.tasks_built += 1
            result.writes += writer.writes
            result.dropped_boxes += writer.dropped
        log.info("dataset task %s: %d frames, %d images, %d boxes dropped, %d objects stored in %.1fs", hex_id,
                 len(frames), writer.images, writer.dropped, writer.writes, time.monotonic() - started)

    def _pictures(self, task: dict, scratch: Path):
        """The task's frames as RGB arrays: from its source at the source's size when so configured
        and the source is there, else from the stored task video."""
        if self.settings.dataset.source_resolution:
            path = source.source_video(self.settings, task)
            numbers = task.get("original_frames")
            if path is not None and numbers:
                return source.source_frames(path, numbers, self.settings.content)
        video = scratch / "task.mp4"
        self.storage.get_file(self.storage.own_key(task["S3_url"]), video)
        return vp.rgb_frames(video, name=task["taskName"])
