"""Image uploads (content_type 2): a folder or a .zip of images, read in natural name order.

Each image is decoded with OpenCV, which applies the EXIF orientation, and letterboxed into
the task's size; unreadable images are reported back, never fatal to the rest. Every member of a
folder is opened inside the content folder without following links out of it (a link to a file
inside is fine); links to outside and anything that is not a regular file are skipped and reported.
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from media_service.errors import ImageError, PathRefused
from media_service.paths import fd_path, inside, open_confined

MAX_IMAGE_BYTES = 256 * 1024 * 1024  # a zip member larger than this is refused (zip bombs)




@dataclass
class Listing:
    images: list["ImageRef"]
    skipped: list[dict]                   # {"fileName", "error"} of members that cannot be used
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class ImageRef:
    number: int          # 1-based position in the sorted listing
    name: str
    load: Callable[[], bytes]


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(root: Path, source: Path, extensions: tuple[str, ...]) -> Listing:
    """The images of a folder or zip inside `root`, and the members skipped (with why)."""
    allowed = {"." + ext.lower() for ext in extensions}
    if source.is_dir():
        return _list_folder(root, source, allowed)
    fd = open_confined(root, source)
    try:
        archive = zipfile.ZipFile(fd_path(fd))
    except (zipfile.BadZipFile, OSError) as exc:
        os.close(fd)
        raise ImageError(f"{source.name} is not a readable zip file: {exc}") from None
    members = [m for m in archive.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in allowed
               and not m.filename.startswith("__MACOSX/") and not Path(m.filename).name.startswith(".")]
    members.sort(key=lambda m: _natural_key(m.filename))

    def loader(member: zipfile.ZipInfo) -> Callable[[], bytes]:
        def load() -> bytes:
            if member.file_size > MAX_IMAGE_BYTES:
                raise ImageError(f"{member.filename} is larger than {MAX_IMAGE_BYTES} bytes")
            with zipfile.ZipFile(fd_path(fd)) as handle:  # one handle per read: safe across threads
                return handle.read(member)
        return load

    return Listing([ImageRef(i, m.filename, loader(m)) for i, m in enumerate(members, 1)], [],
                   close=lambda: os.close(fd))


def _list_folder(root: Path, folder: Path, allowed: set[str]) -> Listing:
    os.close(open_confined(root, folder, directory=True))  # the folder itself: inside, not a link
    names, skipped = [], []
    for entry in os.scandir(folder):
        if Path(entry.name).suffix.lower() not in allowed or entry.name.startswith("."):
            continue
        if entry.is_symlink():
            target = Path(os.path.realpath(entry.path))
            if not (inside(target, root.resolve()) and target.is_file()):
                skipped.append({"fileName": entry.name, "error": "a link to outside the content folder"})
                continue
        elif not entry.is_file(follow_symlinks=False):
            skipped.append({"fileName": entry.name, "error": "not a regular file"})
            continue
        names.append(entry.name)
    names.sort(key=_natural_key)

    def loader(name: str) -> Callable[[], bytes]:
        def load() -> bytes:
            path = folder / name
            if path.is_symlink():
                path = Path(os.path.realpath(path))
            fd = open_confined(root, path)  # checked again: the link may have changed since
            with os.fdopen(fd, "rb") as handle:
                if os.fstat(handle.fileno()).st_size > MAX_IMAGE_BYTES:
                    raise ImageError(f"{name} is larger than {MAX_IMAGE_BYTES} bytes")
                return handle.read()
        return load

    return Listing([ImageRef(i, name, loader(name)) for i, name in enumerate(names, 1)], skipped)


def read_image(ref: ImageRef) -> np.ndarray:
    """BGR pixels with the EXIF orientation applied."""
    try:
        data = ref.load()
    except (OSError, zipfile.BadZipFile, ImageError, PathRefused) as exc:
        raise ImageError(f"{ref.name}: cannot be read ({exc})") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f"{ref.name}: not a decodable image")
    return image


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """Fit inside `size` keeping the aspect ratio, centred on black; returns where it went."""
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    canvas[y:y + new_h, x:x + new_w] = resized
    return canvas, {"originalWidth": w, "originalHeight": h, "x": x, "y": y, "w": new_w, "h": new_h}
