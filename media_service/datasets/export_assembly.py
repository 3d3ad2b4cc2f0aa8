"""The standard exports of a built version (Ultralytics YOLO and COCO, `exports.py`) and its
`samples.zip`, assembled from what the build stored and stored beside the version: every image of
the version with its split and labels, the picture and label file read from the build's local copy
(`frame_writer.ObjectCache`, or the objects in place on local storage) or, for what is not there (a
task built on another host), from storage.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
from bson import ObjectId

from media_service.datasets import exports, keys
from media_service.datasets.frame_writer import ObjectCache, StoredInPlace, Version
from media_service.datasets.labels import DEFAULT, Box

EXPORT_FETCHES = 8  # objects fetched at once for the exports


def store_exports(mongo, storage, settings, version: Version, tasks: list[str],
                  cache: ObjectCache | StoredInPlace) -> dict:
    """The standard exports and samples.zip of the version's `tasks` (hex ids) stored; returns their
    keys (`yolo`, `coco`, `sample`) and the YOLO export's image count (`fileCount`)."""
    folder = settings.path("task_base") / f"dataset-{version.id}-exports"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        records = _records(mongo, storage, version, tasks, cache, folder / "objects")
        names = version.scheme.class_names if version.scheme.mode != DEFAULT else sorted(
            {str(box.cls) for record in records for box in record.boxes})

        def export(name: str) -> tuple[str, int]:
            summary = exports.write_export(records, names, folder / name, formats=(name,),
                                           zip_path=folder / f"{name}.zip")
            key = keys.export_zip_key(version.group, version.id, name)
            storage.put_file(key, summary.zip_path, "application/zip")
            return key, sum(summary.images.values())  # fileCount: images, as the old service counted

        def sample() -> str:
            samples = exports.write_samples_zip(records, names, folder / "samples.zip",
                                                settings.dataset_samples_per_split)
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


def _records(mongo, storage, version: Version, tasks: list[str], cache: ObjectCache | StoredInPlace,
             folder: Path) -> list[exports.ExportRecord]:
    """Every image of the version with its labels: the cached copy, else fetched into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for task in tasks:
        for frame in mongo.dataset_frames(ObjectId(task)):
            mine = next((e for e in frame.get("datasetVersions") or []
                         if str(e.get("versionId")) == str(version.id)), None)
            if mine is None:
                continue
            frame_id = int(frame["frameId"])
            own = storage.own_key
            items.append((task, frame_id, mine["datasetType"], None,
                          keys.frame_image_key(version.group, task, frame_id),
                          own(next(iter(mine["textFiles"].values())))))
            items += [(task, frame_id, mine["datasetType"], aug, own(images["imageUrl"]),
                       own(next(iter(images["textFiles"].values()))))
                      for aug, images in (mine.get("augmentationImages") or {}).items()]

    def fetch(item) -> exports.ExportRecord:
        task, frame_id, split, aug, image_key, text_key = item
        local = cache.path(image_key)
        if not local.is_file():
            local = folder / f"{task}_{frame_id}_{aug or 'frame'}.jpg"
            storage.get_file(image_key, local)
        height, width = _image_size(local)
        copy = cache.path(text_key)
        text = (copy.read_bytes() if copy.is_file() else storage.get_bytes(text_key)).decode()
        return exports.ExportRecord(task, frame_id, split, width, height, str(local),
                                    _boxes_of(text, width, height, version.scheme.mode), aug, label_text=text)

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
