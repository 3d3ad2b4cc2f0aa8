"""The standard exports of a built version (Ultralytics YOLO and COCO, `exports.py`) and its
`samples.zip`, assembled from what the build recorded and stored beside the version.

Every image of the version comes with its split, size and boxes from its entry in the frame doc
(`frame_writer.read_image_record`: what the build computed, for the tasks of this attempt and of
earlier ones alike); its picture and its label file (`samples.zip` holds the version's own label
files) are read from the build's local copy (`frame_writer.ObjectCache`, or the objects in place on
local storage) or, for what is not there (a task built on another host), from storage.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from bson import ObjectId

from media_service.datasets import exports, keys
from media_service.datasets.frame_writer import (
    ImageRecord,
    ObjectCache,
    StoredInPlace,
    Version,
    read_image_record,
    version_entry,
)
from media_service.datasets.labels import DEFAULT

EXPORT_FETCHES = 8  # objects fetched at once for the exports


def store_exports(mongo, storage, settings, version: Version, tasks: list[str],
                  cache: ObjectCache | StoredInPlace) -> dict:
    """The standard exports and samples.zip of the version's `tasks` (hex ids) stored; returns their
    keys (`yolo`, `coco`, `sample`) and the YOLO export's image count (`fileCount`)."""
    folder = settings.folders.path("task_base") / f"dataset-{version.id}-exports"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        records, label_keys = _records(mongo, storage, version, tasks, cache, folder / "objects")
        names = version.scheme.class_names if version.scheme.mode != DEFAULT else sorted(
            {str(box.cls) for record in records for box in record.boxes})

        def export(name: str) -> tuple[str, int]:
            summary = exports.write_export(records, names, None, formats=(name,), zip_path=folder / f"{name}.zip")
            key = keys.export_zip_key(version.group, version.id, name)
            storage.put_file(key, summary.zip_path, "application/zip")
            return key, sum(summary.images.values())  # fileCount: images, as the old service counted

        def sample() -> str:
            per_split = settings.dataset.samples_per_split
            # The version's own label files, read for the few samples only.
            chosen = [replace(record, label_text=_label_text(storage, cache, label_keys[record.stem]))
                      for record in exports.choose_samples(records, per_split)]
            samples = exports.write_samples_zip(chosen, names, folder / "samples.zip", per_split)
            key = keys.samples_zip_key(version.group, version.id)
            storage.put_file(key, samples.zip_path, "application/zip")
            return key

        # The archives are mostly file copies and uploads (outside the GIL): written side by side.
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="dataset-export") as pool:
            yolo, coco, samples = pool.submit(export, "yolo"), pool.submit(export, "coco"), pool.submit(sample)
            (yolo_key, yolo_images), (coco_key, _) = yolo.result(), coco.result()
            return {"yolo": yolo_key, "coco": coco_key, "sample": samples.result(), "fileCount": yolo_images}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _label_text(storage, cache: ObjectCache | StoredInPlace, key: str) -> str:
    copy = cache.path(key)
    return (copy.read_bytes() if copy.is_file() else storage.get_bytes(key)).decode()


@dataclass(frozen=True)
class StoredImage:
    """One image of the version as the build stored it: a frame (`augmentation` None) or an
    augmentation of it, the keys of its picture and its label file, and its recorded size and boxes."""
    task: str
    frame_id: int
    split: int
    augmentation: str | None
    image_key: str
    text_key: str
    record: ImageRecord


def _records(mongo, storage, version: Version, tasks: list[str], cache: ObjectCache | StoredInPlace,
             folder: Path) -> tuple[list[exports.ExportRecord], dict[str, str]]:
    """Every image of the version with its size and boxes as recorded and its picture from the
    cached copy, else fetched into `folder`; and the key of each one's label file, by its stem."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [image for task in tasks for image in _stored_images(mongo, storage, version, task)]

    def fetch(image: StoredImage) -> exports.ExportRecord:
        local = cache.path(image.image_key)
        if not local.is_file():
            local = folder / f"{image.task}_{image.frame_id}_{image.augmentation or 'frame'}.jpg"
            storage.get_file(image.image_key, local)
        return exports.ExportRecord(image.task, image.frame_id, image.split, image.record.width,
                                    image.record.height, str(local), image.record.boxes, image.augmentation)

    # Mostly waiting on storage (S3 round trips): several requests in flight, the order kept.
    with ThreadPoolExecutor(max_workers=EXPORT_FETCHES, thread_name_prefix="dataset-export") as pool:
        records = list(pool.map(fetch, images))
    return records, {record.stem: image.text_key for record, image in zip(records, images)}


def _stored_images(mongo, storage, version: Version, task: str) -> list[StoredImage]:
    """The images of one task (hex id) in this version: each frame's, then its augmentations'."""
    found = []
    own = storage.own_key
    for frame in mongo.dataset_frames(ObjectId(task)):
        mine = version_entry(frame, version.id)
        if mine is None:
            continue
        frame_id = int(frame["frameId"])
        entries = [(None, keys.frame_image_key(version.group, task, frame_id), mine)]
        entries += [(aug, own(entry["imageUrl"]), entry)
                    for aug, entry in (mine.get("augmentationImages") or {}).items()]
        found += [StoredImage(task, frame_id, mine["datasetType"], aug, image_key,
                              own(next(iter(entry["textFiles"].values()))), read_image_record(entry))
                  for aug, image_key, entry in entries]
    return found
