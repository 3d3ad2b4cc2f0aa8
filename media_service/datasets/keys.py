"""Object keys of a dataset version (CONTRACT §3), built in one place and checked.

```
dataset/<groupId>/<taskId>/<frameId>/<frameId>.jpg                                frame_image_key
dataset/<groupId>/<taskId>/<frameId>/<frameId>_thumbnail.jpg                      frame_thumbnail_key
dataset/<groupId>/<taskId>/<frameId>/<versionNo>_<frameId>.txt                    frame_labels_key
dataset/<groupId>/<taskId>/<frameId>/<augDir>/<augType>_<frameId>.jpg             augmentation_image_key
dataset/<groupId>/<taskId>/<frameId>/<augDir>/<augType>_<frameId>_thumbnail.jpg   augmentation_thumbnail_key
dataset/<groupId>/<taskId>/<frameId>/<augDir>/<versionNo>_<augType>_<frameId>.txt augmentation_labels_key
dataset/<groupId>/<versionId>/samples.zip                                         samples_zip_key
dataset/<groupId>/<versionId>/exports/<name>.zip                                  export_zip_key (ours, not in
                                                                                  the contract: the standard exports)
```

Ids may be `ObjectId`s or their hex strings (both print the same). Every part is checked so a key
can never climb out of its folder or collide with another: ids and the augmentation type are one
path segment of `[A-Za-z0-9_-]`, the version number is `x.y.z`, the frame id a positive int
(1-based, as stored), and the augmentation folder one or more such segments joined by `/`
(it comes from configuration, `[Folders] s3_base_aug`).
"""
from __future__ import annotations

import re

ROOT = "dataset"

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_VERSION = re.compile(r"\d+\.\d+\.\d+")
_DIR_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


def _segment(value: object, what: str) -> str:
    text = str(value)
    if not _SEGMENT.fullmatch(text):
        raise ValueError(f"{what} must be letters, digits, '_' or '-': {text!r}")
    return text


def _frame(frame_id: object) -> str:
    if isinstance(frame_id, bool) or not isinstance(frame_id, int):
        if isinstance(frame_id, str) and frame_id.isdecimal():
            frame_id = int(frame_id)
        else:
            raise ValueError(f"frame id must be a positive int: {frame_id!r}")
    if frame_id < 1:
        raise ValueError(f"frame id must be a positive int (1-based): {frame_id!r}")
    return str(frame_id)


def _version(version_no: object) -> str:
    text = str(version_no)
    if not _VERSION.fullmatch(text):
        raise ValueError(f"version number must look like 'x.y.z': {text!r}")
    return text


def _aug_dir(aug_dir: object) -> str:
    text = str(aug_dir).strip("/")
    parts = text.split("/")
    if not text or any(p in (".", "..") or not _DIR_SEGMENT.fullmatch(p) for p in parts):
        raise ValueError(f"augmentation folder must be one or more plain path segments: {aug_dir!r}")
    return text


def frame_folder(group_id: object, task_id: object, frame_id: object) -> str:
    """`dataset/<groupId>/<taskId>/<frameId>`: the folder holding everything of one frame."""
    return f"{ROOT}/{_segment(group_id, 'group id')}/{_segment(task_id, 'task id')}/{_frame(frame_id)}"


def frame_image_key(group_id: object, task_id: object, frame_id: object) -> str:
    frame = _frame(frame_id)
    return f"{frame_folder(group_id, task_id, frame)}/{frame}.jpg"


def frame_thumbnail_key(group_id: object, task_id: object, frame_id: object) -> str:
    frame = _frame(frame_id)
    return f"{frame_folder(group_id, task_id, frame)}/{frame}_thumbnail.jpg"


def frame_labels_key(group_id: object, task_id: object, frame_id: object, version_no: object) -> str:
    """The version's label file of a frame (YOLO lines, or DEFAULT lines with label strings)."""
    frame = _frame(frame_id)
    return f"{frame_folder(group_id, task_id, frame)}/{_version(version_no)}_{frame}.txt"


def augmentation_folder(group_id: object, task_id: object, frame_id: object, aug_dir: object) -> str:
    return f"{frame_folder(group_id, task_id, frame_id)}/{_aug_dir(aug_dir)}"


def augmentation_image_key(group_id: object, task_id: object, frame_id: object, aug_dir: object,
                           aug_type: object) -> str:
    frame = _frame(frame_id)
    folder = augmentation_folder(group_id, task_id, frame, aug_dir)
    return f"{folder}/{_segment(aug_type, 'augmentation type')}_{frame}.jpg"


def augmentation_thumbnail_key(group_id: object, task_id: object, frame_id: object, aug_dir: object,
                               aug_type: object) -> str:
    frame = _frame(frame_id)
    folder = augmentation_folder(group_id, task_id, frame, aug_dir)
    return f"{folder}/{_segment(aug_type, 'augmentation type')}_{frame}_thumbnail.jpg"


def augmentation_labels_key(group_id: object, task_id: object, frame_id: object, aug_dir: object,
                            aug_type: object, version_no: object) -> str:
    frame = _frame(frame_id)
    folder = augmentation_folder(group_id, task_id, frame, aug_dir)
    return f"{folder}/{_version(version_no)}_{_segment(aug_type, 'augmentation type')}_{frame}.txt"


def samples_zip_key(group_id: object, version_id: object) -> str:
    return f"{ROOT}/{_segment(group_id, 'group id')}/{_segment(version_id, 'version id')}/samples.zip"


def export_zip_key(group_id: object, version_id: object, name: object) -> str:
    """Where a standard export (`yolo`, `coco`) of a version is stored; our choice, beside samples.zip."""
    return (f"{ROOT}/{_segment(group_id, 'group id')}/{_segment(version_id, 'version id')}/exports/"
            f"{_segment(name, 'export name')}.zip")
