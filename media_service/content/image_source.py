"""Image uploads (content_type 2): a folder or a .zip of images, read in natural name order.

Each image is decoded with OpenCV, which applies the EXIF orientation, and letterboxed into
the task's size; unreadable images are reported back, never fatal to the rest.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

MAX_IMAGE_BYTES = 256 * 1024 * 1024  # a zip member larger than this is refused (zip bombs)


class ImageError(ValueError):
    pass


@dataclass(frozen=True)
class ImageRef:
    number: int          # 1-based position in the sorted listing
    name: str
    load: Callable[[], bytes]


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(source: Path, extensions: tuple[str, ...]) -> list[ImageRef]:
    allowed = {"." + ext.lower() for ext in extensions}
    if source.is_dir():
        files = [p for p in source.iterdir() if p.is_file() and p.suffix.lower() in allowed
                 and not p.name.startswith(".")]
        files.sort(key=lambda p: _natural_key(p.name))
        return [ImageRef(i, p.name, p.read_bytes) for i, p in enumerate(files, 1)]
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImageError(f"{source.name} is not a readable zip file: {exc}") from None
    members = [m for m in archive.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in allowed
               and not m.filename.startswith("__MACOSX/") and not Path(m.filename).name.startswith(".")]
    members.sort(key=lambda m: _natural_key(m.filename))

    def loader(member: zipfile.ZipInfo) -> Callable[[], bytes]:
        def load() -> bytes:
            if member.file_size > MAX_IMAGE_BYTES:
                raise ImageError(f"{member.filename} is larger than {MAX_IMAGE_BYTES} bytes")
            with zipfile.ZipFile(source) as handle:  # one handle per read: safe across threads
                return handle.read(member)
        return load

    return [ImageRef(i, m.filename, loader(m)) for i, m in enumerate(members, 1)]


def read_image(ref: ImageRef) -> np.ndarray:
    """BGR pixels with the EXIF orientation applied."""
    try:
        data = ref.load()
    except (OSError, zipfile.BadZipFile, ImageError) as exc:
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
