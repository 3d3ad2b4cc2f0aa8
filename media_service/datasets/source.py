"""Dataset images at the source video's own size (`[Dataset] source_resolution`): the frames a task
was cut from, decoded again from the source at their recorded source frame numbers."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from media_service import media as vp
from media_service.contract import SOURCE_FINGERPRINT
from media_service.errors import PathRefused

log = logging.getLogger(__name__)


def source_video(settings, task: dict) -> Path | None:
    """The video the task was cut from, found from the task document alone (`sourceFingerprint`: the
    caller's path inside the content folder, the file's size and modification time when it was cut),
    if it is still there, unchanged. Else None (logged): also for a task cut from images, or before
    tasks carried the fingerprint and its path, since nothing on the task then says which file it
    came from, and images of another file would not match its boxes."""
    known = task.get(SOURCE_FINGERPRINT) or {}
    if not known.get("path"):
        log.info("task %s: its document names no source file; images at the task video's size", task["_id"])
        return None
    try:
        path = settings.content_root().resolve(known["path"])  # checked again: the folder may have changed
    except PathRefused as exc:
        log.warning("task %s: its source path is refused now (%s); images at the task video's size",
                    task["_id"], exc)
        return None
    if not path.is_file():
        log.info("task %s: its source %s is gone; images at the task video's size", task["_id"], known["path"])
        return None
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (known.get("size"), known.get("mtime_ns")):
        log.warning("task %s: its source %s changed since the task was cut; images at the task video's size",
                    task["_id"], known["path"])
        return None
    return path


def source_frames(path: Path, numbers: list[int], content) -> Iterator[np.ndarray]:
    """RGB frames of the source at `numbers` (1-based, ascending), at its displayed size and rotation.
    Decoding starts near the first of them (as a resumed content job does) and stops after the last.
    Raises MediaError when the source no longer has them all (it was replaced since)."""
    info = vp.probe_video(path, content.max_width, content.max_height, name=path.name)  # [Content]
    size = vp.output_size(info, 0)
    found = 0
    for sample in vp.decode_frames_at(path, numbers, info, name=path.name):
        found += 1
        yield vp.prepare_frame(sample.frame, info.rotation, size).to_ndarray(format="rgb24")
    if found == len(numbers):
        return
    raise vp.MediaError("source_changed", f"{path.name} has {found} of the task's {len(numbers)} source "
                                          "frames now; build with [Dataset] source_resolution = false")
