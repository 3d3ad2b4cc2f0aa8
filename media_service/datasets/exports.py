"""Standard exports of a built dataset version, so it trains with common tools as it is.

`write_export(records, class_names, folder, zip_path=...)` writes, into an empty folder, a zip
archive or both (the archive straight from the records, no folder needed):

```
data.yaml                         Ultralytics YOLO: path, train, val, test, nc, names
images/<split>/<stem>.jpg         split = train | val | test, from the frame's datasetType 1 | 2 | 3
labels/<split>/<stem>.txt         YOLO lines, one file per image (empty for an image without boxes)
annotations/instances_<split>.json  COCO detection, one file per split; file_name is relative to
                                  images/<split>/
```

and, given `zip_path`, zips the folder. Both formats share the images (`formats` picks one or
both). `write_samples_zip` writes `samples.zip`: a few frames per split in the same YOLO layout,
with the version's own label files when the records carry them (DEFAULT mode included).

Stability: a rebuild writes the same bytes. File names come from the task id, the frame id and
the augmentation (`<taskId>_<frameId:06d>[_<augType>]`); COCO image ids and annotation ids are
hashes of the same (plus the box's position in the frame), 53 bits so JavaScript reads them
exactly; category id = class index + 1 (COCO keeps 0 for the background; converters such as
Ultralytics' subtract 1); JSON lists are sorted; zip entries are sorted and dated 1980-01-01.

`data.yaml` has `path: ''` on purpose: Ultralytics then takes the folder of the yaml file as the
dataset root. A relative `path` would be resolved against Ultralytics' own datasets folder or the
working directory, and an absolute one would name the folder the export was built in. All three
split keys are written and their folders exist, empty when the version has no frame there.

Boxes are pixel corners in the record's image (`Box` or `(x1, y1, x2, y2, cls)`, `cls` a class
index or a name from `class_names`); they are clipped to the image, and a box with no area left is
left out and counted (`dropped_boxes`).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from media_service.datasets.labels import Box, as_box

SPLITS = {1: "train", 2: "val", 3: "test"}   # Frame datasetType: TRAINING 1, VALIDATION 2, TESTING 3
SPLIT_ORDER = ("train", "val", "test")
_SPLIT_WORDS = {"training": "train", "train": "train", "validation": "val", "val": "val", "valid": "val",
                "testing": "test", "test": "test"}
FORMATS = ("yolo", "coco")
_STORED = {".jpg", ".jpeg", ".png", ".webp", ".zip"}   # already compressed: stored as they are
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def split_name(dataset_type: Any) -> str | None:
    """`train`, `val` or `test` for a frame's `datasetType` (1, 2, 3, their strings, or the names);
    None when the frame has none. Anything else raises ValueError."""
    if dataset_type is None or dataset_type == "":
        return None
    if isinstance(dataset_type, str):
        text = dataset_type.strip().lower()
        if text in _SPLIT_WORDS:
            return _SPLIT_WORDS[text]
        if text.isdecimal():
            dataset_type = int(text)
    if isinstance(dataset_type, int) and not isinstance(dataset_type, bool) and dataset_type in SPLITS:
        return SPLITS[dataset_type]
    raise ValueError(f"unknown datasetType {dataset_type!r} (TRAINING 1, VALIDATION 2, TESTING 3)")


def _hash_id(*parts: object) -> int:
    value = int.from_bytes(hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:8], "big") >> 11
    return value or 1


def coco_image_id(task_id: object, frame_id: object, augmentation: str | None = None) -> int:
    """A stable COCO image id (53 bits) for a frame, or for one augmentation of it."""
    return _hash_id("image", task_id, int(frame_id), augmentation or "")


def coco_annotation_id(task_id: object, frame_id: object, box_index: int, augmentation: str | None = None) -> int:
    """A stable COCO annotation id (53 bits) for the `box_index`-th box of a frame."""
    return _hash_id("annotation", task_id, int(frame_id), augmentation or "", int(box_index))


@dataclass(frozen=True)
class ExportRecord:
    """One image of the version: a frame, or an augmentation of it (`augmentation` = its type).

    `image` is the encoded picture (bytes, stored with `image_ext`) or a path to it (its suffix
    kept); `width`/`height` its size; `split` the frame's `datasetType`; `boxes` pixel corners in
    that image; `label_text` the version's own label file, used by `write_samples_zip`.
    """

    task_id: str
    frame_id: int
    split: int | str | None
    width: int
    height: int
    image: bytes | str | os.PathLike
    boxes: Sequence[Box | Sequence[Any]] = ()
    augmentation: str | None = None
    image_ext: str = ".jpg"
    label_text: str | None = None

    @property
    def stem(self) -> str:
        task = str(self.task_id)
        if not _SAFE.fullmatch(task):
            raise ValueError(f"task id must be letters, digits, '_' or '-': {task!r}")
        if self.augmentation is not None and not _SAFE.fullmatch(self.augmentation):
            raise ValueError(f"augmentation type must be letters, digits, '_' or '-': {self.augmentation!r}")
        stem = f"{task}_{int(self.frame_id):06d}"
        return f"{stem}_{self.augmentation}" if self.augmentation else stem

    @property
    def suffix(self) -> str:
        if isinstance(self.image, (bytes, bytearray, memoryview)):
            return self.image_ext.lower()
        return Path(self.image).suffix.lower() or self.image_ext.lower()


@dataclass
class ExportSummary:
    folder: Path | None
    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLIT_ORDER, 0))
    boxes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLIT_ORDER, 0))
    dropped_boxes: int = 0      # no area left inside the image
    skipped: int = 0            # records without a split
    files: int = 0              # files written into the folder
    data_yaml: Path | None = None
    coco_files: dict[str, Path] = field(default_factory=dict)
    zip_path: Path | None = None


def _class_lookup(class_names: Sequence[str]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for index, name in enumerate(class_names):
        lookup.setdefault(str(name), index)
    return lookup


def data_yaml_text(class_names: Sequence[str]) -> str:
    """The Ultralytics `data.yaml` of an export (see the module's doc for `path: ''`)."""
    doc = {"path": "", "train": "images/train", "val": "images/val", "test": "images/test",
           "nc": len(class_names), "names": {i: str(name) for i, name in enumerate(class_names)}}
    header = ("# Ultralytics YOLO dataset. `path` is empty on purpose: the folder of this file is the\n"
              "# dataset root. Labels: labels/<split>/<image stem>.txt, `<class> <cx> <cy> <w> <h>` in 0..1.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)


class _Writer:
    """The export as a list of archive entries (name -> bytes, or the file holding them): written
    into a folder, zipped, or both, from the same list."""

    def __init__(self, class_names: Sequence[str], formats: Iterable[str], own_labels: bool):
        self.names = [str(n) for n in class_names]
        self.lookup = _class_lookup(self.names)
        self.formats = set(formats)
        unknown = self.formats - set(FORMATS)
        if unknown or not self.formats:
            raise ValueError(f"formats must be among {FORMATS}: {sorted(unknown) or 'none given'}")
        self.own_labels = own_labels
        self.summary = ExportSummary(None)
        self.stems: set[str] = set()
        self.coco: dict[str, tuple[list[dict], list[dict]]] = {s: ([], []) for s in SPLIT_ORDER}
        self.ids: set[int] = set()
        self.entries: dict[str, bytes | Path] = {}
        self.folders = {f"images/{split}" for split in SPLIT_ORDER}  # written even when empty
        if "yolo" in self.formats:
            self.folders |= {f"labels/{split}" for split in SPLIT_ORDER}

    def _cls(self, cls: int | str) -> int:
        if isinstance(cls, str):
            if cls not in self.lookup:
                raise ValueError(f"class {cls!r} is not among the class names")
            return self.lookup[cls]
        index = int(cls)
        if not 0 <= index < len(self.names):
            raise ValueError(f"class index {index} is outside 0..{len(self.names) - 1}")
        return index

    def _new_id(self, value: int, what: str) -> int:
        if value in self.ids:
            raise ValueError(f"two {what}s hash to the same COCO id {value}: is a frame given twice?")
        self.ids.add(value)
        return value

    def add(self, record: ExportRecord) -> None:
        split = split_name(record.split)
        if split is None:
            self.summary.skipped += 1
            return
        stem = record.stem
        if stem in self.stems:
            raise ValueError(f"{stem} is given twice")
        self.stems.add(stem)
        width, height = int(record.width), int(record.height)
        if width <= 0 or height <= 0:
            raise ValueError(f"{stem}: image size must be positive, got {width}x{height}")
        file_name = stem + record.suffix
        image = record.image
        self.entries[f"images/{split}/{file_name}"] = (
            bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else Path(image))
        self.summary.images[split] += 1

        boxes: list[tuple[int, Box]] = []   # (position in the record, clipped box with its class index)
        for position, raw in enumerate(record.boxes):
            box = as_box(raw)
            box = Box(box.x1, box.y1, box.x2, box.y2, self._cls(box.cls)).clipped(width, height)
            if box.width > 0 and box.height > 0:
                boxes.append((position, box))
            else:
                self.summary.dropped_boxes += 1
        self.summary.boxes[split] += len(boxes)

        if "yolo" in self.formats:
            if self.own_labels and record.label_text is not None:
                text = record.label_text
            else:
                text = "".join(box.yolo_line(width, height) + "\n" for _, box in boxes)
            self.entries[f"labels/{split}/{stem}.txt"] = text.encode("utf-8")
        if "coco" in self.formats:
            images, annotations = self.coco[split]
            image_id = self._new_id(coco_image_id(record.task_id, record.frame_id, record.augmentation), "image")
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for position, box in boxes:
                annotation_id = coco_annotation_id(record.task_id, record.frame_id, position, record.augmentation)
                annotations.append({
                    "id": self._new_id(annotation_id, "annotation"), "image_id": image_id,
                    "category_id": int(box.cls) + 1,
                    "bbox": [round(box.x1, 3), round(box.y1, 3), round(box.width, 3), round(box.height, 3)],
                    "area": round(box.width * box.height, 3), "iscrowd": 0, "segmentation": [],
                    "_order": (file_name, position)})

    def finish(self) -> ExportSummary:
        if "yolo" in self.formats:
            self.entries["data.yaml"] = data_yaml_text(self.names).encode("utf-8")
        if "coco" in self.formats:
            self.folders.add("annotations")
            categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(self.names)]
            for split, (images, annotations) in self.coco.items():
                images.sort(key=lambda image: image["file_name"])
                annotations.sort(key=lambda annotation: annotation["_order"])
                for annotation in annotations:
                    del annotation["_order"]
                doc = {"info": {"description": f"{split} split", "version": "1.0"}, "licenses": [],
                       "images": images, "annotations": annotations, "categories": categories}
                self.entries[f"annotations/instances_{split}.json"] = json.dumps(
                    doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.summary.files = len(self.entries)
        return self.summary

    def write_folder(self, folder: Path) -> None:
        """The entries as files under `folder` (images hard-linked where they are files)."""
        for name in sorted(self.folders):
            (folder / name).mkdir(parents=True, exist_ok=True)
        for name, content in self.entries.items():
            target = folder / name
            if isinstance(content, bytes):
                target.write_bytes(content)
                continue
            try:
                os.link(content, target)  # same filesystem: no copy (nothing here writes into it)
            except OSError:
                shutil.copyfile(content, target)
        summary = self.summary
        summary.folder = folder
        if "data.yaml" in self.entries:
            summary.data_yaml = folder / "data.yaml"
        summary.coco_files = {split: folder / f"annotations/instances_{split}.json" for split in SPLIT_ORDER
                              if f"annotations/instances_{split}.json" in self.entries}


def write_export(records: Iterable[ExportRecord], class_names: Sequence[str], folder: str | os.PathLike | None,
                 *, formats: Iterable[str] = FORMATS, zip_path: str | os.PathLike | None = None,
                 own_labels: bool = False) -> ExportSummary:
    """Write the exports of `records` (read once, in any order) into `folder`, which must be empty
    or absent, and/or zip them to `zip_path` (the same bytes as zipping the folder; `folder` None:
    the archive only, nothing written beside it). `class_names[i]` names class index i.
    `own_labels`: YOLO label files are the records' `label_text` where they carry one."""
    if folder is None and zip_path is None:
        raise ValueError("write_export needs a folder, a zip path or both")
    if folder is not None:
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"export folder is not empty: {folder}")
    writer = _Writer(class_names, formats, own_labels)
    for record in records:
        writer.add(record)
    summary = writer.finish()
    if folder is not None:
        writer.write_folder(folder)
    if zip_path is not None:
        summary.zip_path = _write_zip(writer.folders, writer.entries, Path(zip_path))
    return summary


def _write_zip(folders: Iterable[str], entries: dict[str, bytes | Path], zip_path: Path) -> Path:
    """Entries sorted by name (each folder, with those of every entry's parents, as an entry of its
    own, kept even when empty), dated 1980-01-01 with fixed modes; JPEG and PNG stored, the rest
    deflated. Written beside and renamed into place."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(zip_path.name + ".part")
    all_folders = set(folders)
    for name in entries:
        parts = name.split("/")
        all_folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    items = sorted([(name, None) for name in all_folders] + list(entries.items()), key=lambda item: item[0])
    with zipfile.ZipFile(partial, "w") as archive:
        for name, content in items:
            if content is None:
                info = zipfile.ZipInfo(name + "/", _ZIP_DATE)
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(name, _ZIP_DATE)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED if Path(name).suffix.lower() in _STORED else zipfile.ZIP_DEFLATED
            if isinstance(content, bytes):
                archive.writestr(info, content)
                continue
            with content.open("rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)
    os.replace(partial, zip_path)
    return zip_path


def choose_samples(records: Iterable[ExportRecord], per_split: int = 3) -> list[ExportRecord]:
    """A few records per split, the same whatever order they come in (the smallest hashes of
    their names), in name order. Only `per_split` records per split are held at a time."""
    heaps: dict[str, list[tuple[int, str, int, ExportRecord]]] = {s: [] for s in SPLIT_ORDER}
    for seq, record in enumerate(records):
        split = split_name(record.split)
        if split is None or per_split <= 0:
            continue
        stem = record.stem
        key = -int.from_bytes(hashlib.sha256(stem.encode()).digest()[:8], "big")  # max-heap of the smallest
        heap = heaps[split]
        if len(heap) < per_split:
            heapq.heappush(heap, (key, stem, seq, record))
        elif key > heap[0][0]:
            heapq.heapreplace(heap, (key, stem, seq, record))
    chosen = [entry for split in SPLIT_ORDER for entry in heaps[split]]
    return [entry[3] for entry in sorted(chosen, key=lambda entry: (entry[1], entry[2]))]


def write_samples_zip(records: Iterable[ExportRecord], class_names: Sequence[str], zip_path: str | os.PathLike,
                      per_split: int = 3) -> ExportSummary:
    """`samples.zip`: `per_split` images per split with their label files (the version's own
    `label_text` where given, else YOLO lines) and a `data.yaml`, in the YOLO layout."""
    summary = write_export(choose_samples(records, per_split), class_names, None, formats=("yolo",),
                           zip_path=zip_path, own_labels=True)
    summary.folder = Path(zip_path)
    return summary
