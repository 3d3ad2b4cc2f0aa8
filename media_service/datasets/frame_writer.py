"""One task's frames written into a dataset version: for each frame its JPEG, a thumbnail (longer
side `[Dataset] thumbnail_size`), its label file of this version, and the augmentations the
version's seed selects for it, each with its own thumbnail and label file, under CONTRACT §3's keys.
What the frame doc gets (keys, presigned URLs, its `datasetVersions` entry) comes back to the caller,
which writes it; the task's counts (images, bytes, augmentation files, dropped boxes) add up on the
writer.

Each image's part of the entry (the frame's entry itself, and each of its `augmentationImages`)
records what the exports need of it and the build knows already (`imageBoxes`, `image_record`): its
size and its label boxes in its own pixels, as computed (not rounded as in the label file). The
exports read them there for every task, built in this attempt or in an earlier one.

Objects a crashed attempt of the same build stored already are not stored again. `ObjectCache`
keeps a local copy of every object the build stores (S3) for the exports to read back from disk;
`StoredInPlace` takes its part on local storage, where the stored objects are read in place.
On S3 the objects are stored in the background (`uploads`); `TaskWriter.wait` waits for them.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from bson import ObjectId

from media_service import metrics
from media_service.contract import DatasetType
from media_service.datasets import augment_apply, augment_plan, keys, uploads
from media_service.datasets.labels import Box, LabelScheme, frame_labels
from media_service.mongo import utcnow
from media_service.storage import LocalStorage

JPEG = "image/jpeg"
TEXT = "text/plain"
SPLITS = (DatasetType.TRAINING, DatasetType.VALIDATION, DatasetType.TESTING)
RECORD = "imageBoxes"  # an image's size and boxes in its entry (`image_record`)


@dataclass
class Version:
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


def split_shares(version: dict) -> list[float]:
    """The version's `splitCount` shares (training, validation, testing); 80/10/10 when it has none."""
    shares = []
    for entry in (version.get("splitCount") or [])[:3]:
        try:
            shares.append(max(0.0, float(entry.get("percentage") if isinstance(entry, dict) else entry)))
        except (TypeError, ValueError):
            shares.append(0.0)
    shares += [0.0] * (3 - len(shares))
    return shares if sum(shares) > 0 else [80.0, 10.0, 10.0]


def version_entry(frame: dict, version_id: ObjectId) -> dict | None:
    """The frame's `datasetVersions` entry for the version (Node may store its id as a string)."""
    return next((entry for entry in frame.get("datasetVersions") or []
                 if isinstance(entry, dict) and str(entry.get("versionId")) == str(version_id)), None)


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


def image_record(width: int, height: int, boxes: Iterable[Box]) -> dict:
    """An image's `imageBoxes`: its size, and its boxes `[x1, y1, x2, y2, class]` in its pixels."""
    return {"width": int(width), "height": int(height),
            "boxes": [[float(box.x1), float(box.y1), float(box.x2), float(box.y2), box.cls] for box in boxes]}


@dataclass(frozen=True)
class ImageRecord:
    """An image's size and its boxes in its pixels, as its `imageBoxes` recorded them."""
    width: int
    height: int
    boxes: list[Box]


def read_image_record(images: dict) -> ImageRecord:
    """The size and boxes of an image from its entry (the frame's, or one of its augmentations')."""
    record = images.get(RECORD)
    if record is None:
        raise LookupError(f"an image of the version has no {RECORD} (its task was built by an earlier version of "
                          "the service): the next attempt builds that task again")
    return ImageRecord(record["width"], record["height"], [Box(*box) for box in record["boxes"]])


def is_recorded(entry: dict) -> bool:
    """Whether every image of a frame's entry has its `imageBoxes` (a task an earlier version of the
    service built has none)."""
    return RECORD in entry and all(RECORD in images for images in (entry.get("augmentationImages") or {}).values())


class ObjectCache:
    """A local copy of every object a build stores, so that its exports read them back from disk
    rather than from storage (on S3 that halves the requests of a build). Kept across a crash of the
    same build on the same host; what is not here (a task built elsewhere) is fetched from storage."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_build(cls, task_base: Path, version_id: ObjectId, build: str) -> ObjectCache:
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


class StoredInPlace:
    """The cache's part for local storage: the stored objects themselves are read in place."""

    def __init__(self, storage: LocalStorage):
        self.storage = storage

    def path(self, key: str) -> Path:
        return self.storage.path_of(key)

    def put(self, key: str, data: bytes) -> None:
        pass

    def remove(self) -> None:
        pass


def object_cache(storage, task_base: Path, version: Version) -> ObjectCache | StoredInPlace:
    """Where the build's objects are read back from: in place on local storage, else a local copy."""
    if isinstance(storage, LocalStorage):
        return StoredInPlace(storage)
    return ObjectCache.for_build(task_base, version.id, version.build)


class TaskWriter:
    """Writes the frames of one task, skipping objects already stored by this build, and counts them."""

    def __init__(self, storage, dataset, augmentation: augment_plan.AugmentationSettings, version: Version, task: str,
                 stored: set[str], cache: ObjectCache | StoredInPlace,
                 sink: uploads.Inline | uploads.Background | None = None):
        self.storage, self.dataset, self.augmentation = storage, dataset, augmentation  # dataset: [Dataset]
        self.version, self.task, self.stored, self.cache = version, task, stored, cache
        self.sink = sink or uploads.Inline(storage)
        self.pending: list = []  # the objects handed to the sink and maybe not stored yet
        self.writes = self.images = self.image_bytes = self.dropped = 0
        self.counts: dict[str, dict] = {}  # the task's augmentationFileCounts: {augType: {count, size}}

    def frame(self, frame: dict, rgb: np.ndarray, task_size: tuple) -> tuple[dict, dict]:
        """Store one frame (`rgb`, its picture) and its augmentations; returns the frame doc's fields
        and its `datasetVersions` entry for this version."""
        version, task, dataset = self.version, self.task, self.dataset
        frame_id = int(frame["frameId"])
        height, width = rgb.shape[:2]
        group, version_no = version.group, version.version_no
        # Boxes are measured in the task video's pixels; the picture may be the source's, larger.
        scale = (width / task_size[0], height / task_size[1]) if all(task_size) else (1.0, 1.0)
        labels = frame_labels(frame.get("boxes"), version.scheme, width, height, scale)
        metrics.lap("labels")
        image_key = keys.frame_image_key(group, task, frame_id)
        thumb_key = keys.frame_thumbnail_key(group, task, frame_id)
        labels_key = keys.frame_labels_key(group, task, frame_id, version_no)
        self._image(image_key, thumb_key, rgb)
        self._text(labels_key, labels.text)
        full = self.storage.document_key
        expires = utcnow() + timedelta(seconds=dataset.url_expiry_seconds)
        entry = {"datasetType": _split_of(frame, version.id, version.seed, task, version.shares),
                 "textFiles": {labels.mode: full(labels_key)}, "augmentationImages": {},
                 RECORD: image_record(width, height, labels.boxes)}
        fraction = self.augmentation.fraction
        for request in version.augmentations:
            if not augment_apply.is_selected(version.seed, task, frame_id, request.aug_type, fraction):
                continue
            done = augment_apply.augment_frame(rgb, labels.boxes, request, seed=version.seed, task_id=task,
                                         frame_id=frame_id, settings=self.augmentation)
            metrics.lap("augment")
            aug_dir = dataset.augmentation_folder
            image = keys.augmentation_image_key(group, task, frame_id, aug_dir, request.aug_type)
            thumb = keys.augmentation_thumbnail_key(group, task, frame_id, aug_dir, request.aug_type)
            text = keys.augmentation_labels_key(group, task, frame_id, aug_dir, request.aug_type, version_no)
            size = self._image(image, thumb, done.image)
            self._text(text, done.label_text)
            count = self.counts.setdefault(request.aug_type, {"count": 0, "size": 0})
            count["count"] += 1
            count["size"] += size
            # The old service's shape (CONTRACT §2), then what this service adds.
            entry["augmentationImages"][request.aug_type] = {
                "textFiles": {labels.mode: full(text)}, "imageUrl": full(image), "thumbnailUrl": full(thumb),
                "awsImageUrl": self._url(image), "awsThumbnailUrl": self._url(thumb),
                "awsThumbnailExpiredDate": expires, "droppedBoxes": done.dropped,
                RECORD: image_record(done.width, done.height, done.boxes)}
        fields = {"imageUrl": full(image_key), "thumbnailUrl": full(thumb_key), "awsUrl": self._url(image_key),
                  "awsThumbnailUr": self._url(thumb_key), "awsExpiredDate": expires,
                  "awsThumbnailExpiredDate": expires}
        metrics.lap("urls")
        self.dropped += labels.dropped
        return fields, entry

    def _put(self, key: str, data: bytes, content_type: str, exported: bool = True) -> None:
        """Store the object (unless stored already); what the exports read (`exported`: images and
        label files, not thumbnails) also goes to the build's local copy."""
        if key not in self.stored:
            self.pending.append(self.sink.put(key, data, content_type))
            self.writes += 1
        if exported:
            self.cache.put(key, data)
        metrics.lap("storage")

    def _image(self, key: str, thumbnail_key: str, rgb: np.ndarray) -> int:
        """Store the picture and its thumbnail; returns the picture's size in bytes."""
        quality = self.dataset.jpeg_quality
        data = _jpeg(rgb, quality)
        metrics.lap("jpeg")
        self._put(key, data, JPEG)
        self.images += 1
        self.image_bytes += len(data)
        thumbnail = _jpeg(_thumbnail(rgb, self.dataset.thumbnail_size), quality)
        metrics.lap("thumbnail")
        self._put(thumbnail_key, thumbnail, JPEG, exported=False)
        return len(data)

    def wait(self) -> None:
        """Wait until every object of the task is stored; raises the first failure."""
        uploads.wait_all(self.pending)
        metrics.lap("storage")

    def abandon(self) -> None:
        """Wait for what is still uploading, its failures ignored (the task failed already)."""
        try:
            uploads.wait_all(self.pending)
        except Exception:  # noqa: BLE001 - the task's own failure is the one reported
            pass

    def _text(self, key: str, text: str) -> None:
        self._put(key, text.encode(), TEXT)

    def _url(self, key: str) -> str:
        return self.storage.url(key, self.dataset.url_expiry_seconds)


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """The image at most `size` pixels on its longer side. Area averaging gives a clean small picture
    but is slow from far above: a bilinear halving first brings it to twice the size (2.5x faster at
    720p, PSNR 45 dB against area averaging alone)."""
    height, width = image.shape[:2]
    scale = size / max(width, height)
    if scale >= 1:
        return image
    if scale < 0.5:
        image = cv2.resize(image, (max(1, round(width * scale * 2)), max(1, round(height * scale * 2))),
                           interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG (4:2:0) straight from RGB: libjpeg-turbo converts to YCbCr itself, so no BGR copy is made
    (1.6 ms a 720p image here against 2.2 for cv2.cvtColor + cv2.imencode; bench/README.md)."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB",
                                  colorsubsampling="420")
