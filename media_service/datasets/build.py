"""Building one dataset version: the library under `dataset_processor.py -v` and `/api/createDataSet`.

For every task of the version's `taskList` (several tasks at once, up to `[Cores] cpu_cores`), the
stored task video is decoded once: every frame becomes a JPEG, a thumbnail (longer side
`[Dataset] thumbnail_size`), a label file of this version, and the requested augmentations of the
frames the version's seed selects, each with its own thumbnail and label file, under CONTRACT §3's
keys. The frame docs get their keys, URLs and `datasetVersions` entry in one batched write per
task; the task's `taskStatus` entry then says `complete` with its counts. `taskStatus` is the
record a resumed build reads: complete tasks are skipped, and objects a crashed attempt of the same
build already stored are not written again. When every task is complete the standard exports
(Ultralytics YOLO, COCO) and `samples.zip` are stored beside the version, made from a local copy
of what the build stored (`_ObjectCache`) or, for what is not there, from storage.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from bson import ObjectId

import video_processor as vp
from media_service import metrics
from media_service.contract import DatasetType
from media_service.datasets import augment, exports, keys, source
from media_service.datasets.labels import DEFAULT, Box, LabelScheme, frame_labels
from media_service.jobs import database_unavailable
from media_service.storage import LocalStorage, StorageError
from mongo_manager import MongoManager, utcnow

log = logging.getLogger(__name__)

JPEG = "image/jpeg"
TEXT = "text/plain"
SPLITS = (DatasetType.TRAINING, DatasetType.VALIDATION, DatasetType.TESTING)
EXPORT_FETCHES = 8  # objects fetched at once for the exports


class DatasetError(ValueError):
    """The version cannot be built as it stands; `code` is stable, the message says what to change."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


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


def _split_of(frame: dict, version_id: ObjectId, seed: int, task: str, shares: list[float]) -> int:
    """The frame's `datasetType` for this version as Node set it; else drawn from the version's
    `splitCount` shares with its seed (the same on every rebuild)."""
    for entry in frame.get("datasetVersions") or []:
        if isinstance(entry, dict) and str(entry.get("versionId")) == str(version_id):
            try:
                kind = int(entry.get("datasetType"))
            except (TypeError, ValueError):
                break
            if kind in SPLITS:
                return kind
    draw = random.Random(f"{seed}:{task}:{frame['frameId']}").random() * sum(shares)
    for kind, share in zip(SPLITS, shares):
        if draw < share:
            return kind
        draw -= share
    return DatasetType.TRAINING


def _shares(version: dict) -> list[float]:
    shares = []
    for entry in (version.get("splitCount") or [])[:3]:
        try:
            shares.append(max(0.0, float(entry.get("percentage") if isinstance(entry, dict) else entry)))
        except (TypeError, ValueError):
            shares.append(0.0)
    shares += [0.0] * (3 - len(shares))
    return shares if sum(shares) > 0 else [80.0, 10.0, 10.0]


class DatasetBuilder:
    def __init__(self, mongo: MongoManager, storage, settings):
        self.mongo, self.storage, self.settings = mongo, storage, settings
        self.augmentation = augment.AugmentationSettings.from_config(
            {key: value for key, value in (("aug_map", settings.augmentation_aug_map),
                                           ("range_map", settings.augmentation_range_map),
                                           ("default_ranges", settings.augmentation_default_ranges),
                                           ("disabled_augs", settings.augmentation_disabled_augs),
                                           ("keep_size_crop", settings.augmentation_keep_size_crop),
                                           ("fraction", settings.augmentation_fraction)) if value != ""})

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
        task_ids = _task_ids(version)
        if not task_ids:
            raise DatasetError("no_tasks", f"dataset version {version_id} has no tasks in its taskList")
        group = version.get("dataSetGroupId")
        if not group:
            raise DatasetError("no_group", f"dataset version {version_id} has no dataSetGroupId")
        try:  # before anything is written: an id the service does not know fails the build at once
            plan = augment.requested_augmentations(version.get("augmentationTypes"), self.augmentation)
        except augment.AugmentationShapeError as error:
            raise DatasetError("bad_augmentations", f"dataset version {version_id}: {error}") from None
        yolo = {"fileType": "zip", "name": "YOLO", **self.mongo.yolo_export_format()}
        version = self.mongo.start_dataset_build(version_id, [str(t) for t in task_ids],
                                                 random.SystemRandom().randrange(2**31), uuid.uuid4().hex, yolo)
        if plan.disabled:
            log.info("augmentations in disabled_augs (left out): %s", ", ".join(plan.disabled))
        context = _Version(version, group, LabelScheme.from_list(version.get("labelAttributeList")), plan.requests,
                           _shares(version))
        result = BuildResult(version_id, tasks=len(task_ids))
        entries = {entry["task"]: entry for entry in version["taskStatus"]["tasks"]}
        todo = [task for task in task_ids if entries[str(task)]["state"] != "complete"]
        cache = (_StoredInPlace(self.storage) if isinstance(self.storage, LocalStorage)
                 else _ObjectCache.for_build(self.settings.path("task_base"), version_id, context.build))
        try:
            failures = self._build_tasks(context, todo, entries, result, cache, check, progress)
            if failures:
                raise TaskFailed(f"{len(failures)} of {len(task_ids)} tasks failed this attempt: "
                                 + "; ".join(failures))
            check()
            progress(0.9, "exports")
            version = self.mongo.get_dataset_version(version_id)
            with metrics.cpu_stage("dataset", "exports"):  # the whole process: the archives are written by a pool
                result.exports = self._exports(context, version, cache)
        except DatasetError:
            cache.remove()  # this build is over; the next one starts afresh
            raise
        cache.remove()
        finished = version["taskStatus"]["tasks"]
        result.images = sum(entry.get("imageCount", 0) for entry in finished)
        result.size = sum(entry.get("imageDataSize", 0) for entry in finished)
        before_finish()
        self.mongo.finish_dataset(version_id, {
            "imageCount": result.images, "size": result.size,
            "exportFormats.YOLO.fileCount": result.exports["fileCount"],
            "exportFormats.YOLO.sample": self.storage.document_key(result.exports["sample"]),
            "exportFormats.YOLO.file": self.storage.document_key(result.exports["yolo"]),
            "exportFormats.COCO": {"fileType": "zip", "name": "COCO",
                                   "file": self.storage.document_key(result.exports["coco"]),
                                   "createdAt": utcnow()}})
        progress(1.0, "done")
        return result

    def _build_tasks(self, context: "_Version", todo: list[ObjectId], entries: dict, result: BuildResult,
                     cache: "_ObjectCache | _StoredInPlace", check, progress) -> list[str]:
        failures: list[str] = []
        done = len(entries) - len(todo)
        lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=self.settings.worker_threads, thread_name_prefix="dataset") as pool:
            futures = {pool.submit(self._timed_task, context, task, entries[str(task)], result, cache, lock,
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

    def _task_failed(self, context: "_Version", task: ObjectId, entry: dict, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (StorageError, vp.MediaError)) else str(exc)
        self.mongo.set_dataset_task(context.id, str(task), {"state": "pending", "error": text}, attempt=True)
        attempts = entry.get("attempts", 0) + 1
        permanent = (isinstance(exc, StorageError) and exc.permanent) or isinstance(exc, vp.MediaError)
        if permanent or attempts >= self.settings.dataset_task_attempts:
            raise DatasetError("task_failed", f"task {task} failed{'' if permanent else f' {attempts} times'}: "
                                              f"{text}") from exc
        log.warning("task %s failed (attempt %d of %d): %s", task, attempts, self.settings.dataset_task_attempts,
                    text)
        return f"task {task}: {text}"

    # -- one task ------------------------------------------------------------------------------
    def _timed_task(self, *args) -> None:
        """`_task`, its thread's CPU seconds by stage (decode, jpeg, thumbnail, labels, augment, urls,
        storage, database) added to `metrics.cpu_seconds("dataset")`."""
        with metrics.cpu_stages("dataset"):
            self._task(*args)

    def _task(self, context: "_Version", task_id: ObjectId, entry: dict, result: BuildResult,
              cache: "_ObjectCache | _StoredInPlace", lock, check) -> None:
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
        scratch = self.settings.path("task_base") / f"dataset-{context.id}-{hex_id}"
        scratch.mkdir(parents=True, exist_ok=True)
        metrics.lap("database")
        writer = _Writer(self.storage, stored, cache, self.settings.dataset_url_expiry_seconds)
        updates, counts, dropped = [], {}, 0
        try:
            pictures = self._pictures(task, scratch)
            metrics.lap("storage")
            task_size = (task.get("videoResolutionWidth"), task.get("videoResolutionHeight"))
            decoded = 0
            for frame, rgb in zip(frames, pictures):
                metrics.lap("decode")
                check()
                decoded += 1
                fields, entry_fields, frame_dropped = self._frame(context, hex_id, frame, rgb, task_size, writer,
                                                                  counts)
                updates.append((frame["_id"], fields, entry_fields))
                dropped += frame_dropped
            if decoded != len(frames):
                raise vp.MediaError("task_mismatch", f"task {hex_id}: its video has {decoded} frames, "
                                                     f"its frame documents {len(frames)}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        metrics.count("frames", len(frames), stage="dataset")
        self.mongo.set_frame_dataset_fields(context.id, updates)
        self.mongo.set_dataset_task(context.id, hex_id, {
            "state": "complete", "error": "none", "imageCount": writer.images, "imageDataSize": writer.image_bytes,
            "augmentationFileCounts": counts, "droppedBoxes": dropped})
        metrics.lap("database")
        with lock:
            result.tasks_built += 1
            result.writes += writer.writes
            result.dropped_boxes += dropped
        log.info("dataset task %s: %d frames, %d images, %d boxes dropped, %d objects stored in %.1fs", hex_id,
                 len(frames), writer.images, dropped, writer.writes, time.monotonic() - started)

    def _pictures(self, task: dict, scratch: Path):
        """The task's frames as RGB arrays: from its source at the source's size when so configured
        and the source is there, else from the stored task video."""
        if self.settings.dataset_source_resolution:
            path = source.source_video(self.mongo, self.settings, task)
            numbers = task.get("original_frames")
            if path is not None and numbers:
                return source.source_frames(path, numbers, self.settings)
        video = scratch / "task.mp4"
        self.storage.get_file(self.storage.own_key(task["S3_url"]), video)
        return vp.rgb_frames(video, name=task["taskName"])

    def _frame(self, context: "_Version", task: str, frame: dict, rgb: np.ndarray, task_size: tuple,
               writer: "_Writer", counts: dict) -> tuple[dict, dict, int]:
        frame_id = int(frame["frameId"])
        height, width = rgb.shape[:2]
        group, version_no = context.group, context.version_no
        # Boxes are measured in the task video's pixels; the picture may be the source's, larger.
        scale = (width / task_size[0], height / task_size[1]) if all(task_size) else (1.0, 1.0)
        labels = frame_labels(frame.get("boxes"), context.scheme, width, height, scale)
        metrics.lap("labels")
        image_key = keys.frame_image_key(group, task, frame_id)
        thumb_key = keys.frame_thumbnail_key(group, task, frame_id)
        labels_key = keys.frame_labels_key(group, task, frame_id, version_no)
        writer.image(image_key, thumb_key, rgb, self.settings)
        writer.text(labels_key, labels.text)
        full = self.storage.document_key
        expires = utcnow() + timedelta(seconds=self.settings.dataset_url_expiry_seconds)
        entry = {"datasetType": _split_of(frame, context.id, context.seed, task, context.shares),
                 "textFiles": {labels.mode: full(labels_key)}, "augmentationImages": {}}
        fraction = self.augmentation.fraction
        for request in context.augmentations:
            if not augment.is_selected(context.seed, task, frame_id, request.aug_type, fraction):
                continue
            done = augment.augment_frame(rgb, labels.boxes, request, seed=context.seed, task_id=task,
                                         frame_id=frame_id, settings=self.augmentation)
            metrics.lap("augment")
            aug_dir = self.settings.dataset_augmentation_folder
            image = keys.augmentation_image_key(group, task, frame_id, aug_dir, request.aug_type)
            thumb = keys.augmentation_thumbnail_key(group, task, frame_id, aug_dir, request.aug_type)
            text = keys.augmentation_labels_key(group, task, frame_id, aug_dir, request.aug_type, version_no)
            before = writer.image_bytes
            writer.image(image, thumb, done.image, self.settings)
            writer.text(text, done.label_text)
            count = counts.setdefault(request.aug_type, {"count": 0, "size": 0})
            count["count"] += 1
            count["size"] += writer.image_bytes - before
            # The old service's shape (CONTRACT §2), then what this service adds.
            entry["augmentationImages"][request.aug_type] = {
                "textFiles": {labels.mode: full(text)}, "imageUrl": full(image), "thumbnailUrl": full(thumb),
                "awsImageUrl": writer.url(image), "awsThumbnailUrl": writer.url(thumb),
                "awsThumbnailExpiredDate": expires, "droppedBoxes": done.dropped}
        fields = {"imageUrl": full(image_key), "thumbnailUrl": full(thumb_key), "awsUrl": writer.url(image_key),
                  "awsThumbnailUr": writer.url(thumb_key), "awsExpiredDate": expires,
                  "awsThumbnailExpiredDate": expires}
        metrics.lap("urls")
        return fields, entry, labels.dropped

    # -- exports -------------------------------------------------------------------------------
    def _exports(self, context: "_Version", version: dict, cache: "_ObjectCache | _StoredInPlace") -> dict:
        """The standard exports and samples.zip, from the stored objects (the record of the build)."""
        folder = self.settings.path("task_base") / f"dataset-{context.id}-exports"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            records = self._records(context, version, cache, folder / "objects")
            names = context.scheme.class_names if context.scheme.mode != DEFAULT else sorted(
                {str(box.cls) for record in records for box in record.boxes})

            def export(name: str) -> tuple[str, int]:
                summary = exports.write_export(records, names, folder / name, formats=(name,),
                                               zip_path=folder / f"{name}.zip")
                key = keys.export_zip_key(context.group, context.id, name)
                self.storage.put_file(key, summary.zip_path, "application/zip")
                return key, sum(summary.images.values())  # fileCount: images, as the old service counted

            def sample() -> str:
                samples = exports.write_samples_zip(records, names, folder / "samples.zip",
                                                    self.settings.dataset_samples_per_split)
                key = keys.samples_zip_key(context.group, context.id)
                self.storage.put_file(key, samples.zip_path, "application/zip")
                return key

            # The archives are mostly file copies and uploads (outside the GIL): written side by side.
            with ThreadPoolExecutor(max_workers=3, thread_name_prefix="dataset-export") as pool:
                yolo, coco, samples = pool.submit(export, "yolo"), pool.submit(export, "coco"), pool.submit(sample)
                (yolo_key, yolo_images), (coco_key, _) = yolo.result(), coco.result()
                return {"yolo": yolo_key, "coco": coco_key, "sample": samples.result(), "fileCount": yolo_images}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _records(self, context: "_Version", version: dict, cache: "_ObjectCache | _StoredInPlace",
                 folder: Path) -> list[exports.ExportRecord]:
        """Every image of the version with its labels: the cached copy, else fetched into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        items = []
        for entry in version["taskStatus"]["tasks"]:
            task = entry["task"]
            for frame in self.mongo.dataset_frames(ObjectId(task)):
                mine = next((e for e in frame.get("datasetVersions") or []
                             if str(e.get("versionId")) == str(context.id)), None)
                if mine is None:
                    continue
                frame_id = int(frame["frameId"])
                own = self.storage.own_key
                items.append((task, frame_id, mine["datasetType"], None,
                              keys.frame_image_key(context.group, task, frame_id),
                              own(next(iter(mine["textFiles"].values())))))
                items += [(task, frame_id, mine["datasetType"], aug, own(images["imageUrl"]),
                           own(next(iter(images["textFiles"].values()))))
                          for aug, images in (mine.get("augmentationImages") or {}).items()]

        def fetch(item) -> exports.ExportRecord:
            task, frame_id, split, aug, image_key, text_key = item
            local = cache.path(image_key)
            if not local.is_file():
                local = folder / f"{task}_{frame_id}_{aug or 'frame'}.jpg"
                self.storage.get_file(image_key, local)
            height, width = _image_size(local)
            copy = cache.path(text_key)
            text = (copy.read_bytes() if copy.is_file() else self.storage.get_bytes(text_key)).decode()
            return exports.ExportRecord(task, frame_id, split, width, height, str(local),
                                        _boxes_of(text, width, height, context.scheme.mode), aug, label_text=text)

        # Mostly waiting on storage (S3 round trips): several requests in flight, the order kept.
        with ThreadPoolExecutor(max_workers=EXPORT_FETCHES, thread_name_prefix="dataset-export") as pool:
            return list(pool.map(fetch, items))


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the JPEG's header, without decoding it."""
    with open(path, "rb") as handle:
        data = handle.read()
    index = 2
    while index < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[index + 5:index + 7], "big"), int.from_bytes(data[index + 7:index + 9], "big")
        index += 2 + int.from_bytes(data[index + 2:index + 4], "big")
    image = cv2.imread(str(path))
    return image.shape[0], image.shape[1]


def _boxes_of(text: str, width: int, height: int, mode: str) -> list[Box]:
    """A label file's lines back as pixel boxes (YOLO: class index first; DEFAULT: the label)."""
    boxes = []
    for line in text.splitlines():
        parts = line.rsplit(maxsplit=4)
        if len(parts) != 5:
            continue
        cls = parts[0] if mode == DEFAULT else int(parts[0])
        cx, cy, w, h = (float(value) for value in parts[1:])
        boxes.append(Box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height,
                         cls))
    return boxes


@dataclass
class _Version:
    """What every task of one build needs to know about its version."""
    doc: dict
    group: str
    scheme: LabelScheme
    augmentations: list
    shares: list[float]

    @property
    def id(self) -> ObjectId:
        return self.doc["_id"]

    @property
    def build(self) -> str:
        return self.doc["taskStatus"]["build"]

    @property
    def seed(self) -> int:
        return int(self.doc["augmentationSeed"])

    @property
    def version_no(self) -> str:
        return str(self.doc.get("versionNo") or "1.0.0")


class _ObjectCache:
    """A local copy of every object a build stores, so that its exports read them back from disk
    rather than from storage (on S3 that halves the requests of a build). Kept across a crash of the
    same build on the same host; what is not here (a task built elsewhere) is fetched from storage."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_build(cls, task_base: Path, version_id: ObjectId, build: str) -> "_ObjectCache":
        for older in task_base.glob(f"dataset-{version_id}-*-objects"):
            if older.name != f"dataset-{version_id}-{build}-objects":
                shutil.rmtree(older, ignore_errors=True)  # an earlier build's: other content
        return cls(task_base / f"dataset-{version_id}-{build}-objects")

    def path(self, key: str) -> Path:
        return self.folder / (hashlib.sha1(key.encode()).hexdigest() + Path(key).suffix)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        partial = path.with_name(f"{path.name}.{threading.get_ident()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)  # never a half-written copy under the real name

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _StoredInPlace:
    """The cache's part for local storage: the stored objects themselves are read in place."""

    def __init__(self, storage: LocalStorage):
        self.storage = storage

    def path(self, key: str) -> Path:
        return self.storage.path_of(key)

    def put(self, key: str, data: bytes) -> None:
        pass

    def remove(self) -> None:
        pass


class _Writer:
    """Stores one task's objects, skipping those already stored by this build, and counts them."""

    def __init__(self, storage, stored: set[str], cache: "_ObjectCache | _StoredInPlace", expiry: int):
        self.storage, self.stored, self.cache, self.expiry = storage, stored, cache, expiry
        self.writes = self.images = self.image_bytes = 0

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        if key not in self.stored:
            self.storage.put_bytes(key, data, content_type)
            self.writes += 1
        self.cache.put(key, data)
        metrics.lap("storage")

    def image(self, key: str, thumbnail_key: str, rgb: np.ndarray, settings) -> None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        data = _jpeg(bgr, settings.dataset_jpeg_quality)
        metrics.lap("jpeg")
        self._put(key, data, JPEG)
        self.images += 1
        self.image_bytes += len(data)
        thumbnail = _jpeg(_thumbnail(bgr, settings.dataset_thumbnail_size), settings.dataset_jpeg_quality)
        metrics.lap("thumbnail")
        self._put(thumbnail_key, thumbnail, JPEG)

    def text(self, key: str, text: str) -> None:
        self._put(key, text.encode(), TEXT)

    def url(self, key: str) -> str:
        return self.storage.url(key, self.expiry)


def _thumbnail(bgr: np.ndarray, size: int) -> np.ndarray:
    """The image at most `size` pixels on its longer side. Area averaging gives a clean small picture
    but is slow from far above: a bilinear halving first brings it to twice the size (2.5x faster at
    720p, PSNR 45 dB against area averaging alone)."""
    height, width = bgr.shape[:2]
    scale = size / max(width, height)
    if scale >= 1:
        return bgr
    if scale < 0.5:
        bgr = cv2.resize(bgr, (max(1, round(width * scale * 2)), max(1, round(height * scale * 2))),
                         interpolation=cv2.INTER_LINEAR)
    return cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def _jpeg(bgr: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()
