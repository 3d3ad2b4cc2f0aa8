"""One augmentation applied to one frame of a dataset version, its boxes transformed with the picture.

`albumentations` 2.0.x (MIT) does the work; boxes go through it in `pascal_voc` form (pixel
corners), so they turn, flip, shear and crop with the image.

Boxes: clipped to the new picture, then dropped when less than `min_visibility` (default 0.3) of
the transformed box is left inside it or less than `min_area` (default 1 px^2) is left: a sliver
at the border is no longer the object. Rotations and shears give the box around the turned
corners (`largest_box`), which is exact for the axis-aligned objects the boxes were drawn on.

Determinism: whether a frame gets an augmentation (`is_selected`, share `fraction`) and the random
draws of the augmentation (`frame_seed`) come from a hash of the version's seed, the task id, the
frame id and the augmentation type only, so a rebuild, or a resumed build in another process,
writes the same bytes, whatever the order frames are processed in.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from media_service.datasets.augment_plan import DEFAULT_SETTINGS, AugmentationRequest, AugmentationSettings, request_for
from media_service.datasets.augment_registry import AUGMENTERS, load_albumentations
from media_service.datasets.labels import Box, as_box


# -- determinism -------------------------------------------------------------------------------
def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def frame_seed(seed: int, task_id: object, frame_id: object, aug_type: str) -> int:
    """The random seed of one augmentation of one frame (32 bits), from the version's seed."""
    return int.from_bytes(_digest("draw", int(seed), task_id, frame_id, aug_type)[:4], "big")


def is_selected(seed: int, task_id: object, frame_id: object, aug_type: str, fraction: float = 1.0) -> bool:
    """Whether this frame gets this augmentation: a stable draw below `fraction`."""
    if fraction >= 1.0:
        return True
    draw = int.from_bytes(_digest("select", int(seed), task_id, frame_id, aug_type)[:8], "big") / 2**64
    return draw < fraction


# -- one frame ---------------------------------------------------------------------------------
@dataclass
class AugmentedFrame:
    aug_type: str
    image: np.ndarray                       # RGB, uint8
    boxes: list[Box]                        # pixel corners in the new picture (to 1/1000 px), classes kept
    dropped: int = 0                        # boxes that left the picture (or had no area to start with)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def label_text(self) -> str:
        """The augmented frame's label file (YOLO lines, or DEFAULT ones when classes are labels)."""
        return "".join(box.yolo_line(self.width, self.height) + "\n" for box in self.boxes)


def augment_frame(image: np.ndarray, boxes: Iterable[Box | Sequence[Any]], request: AugmentationRequest | str, *,
                  seed: int, task_id: object, frame_id: object,
                  settings: AugmentationSettings = DEFAULT_SETTINGS) -> AugmentedFrame:
    """Apply one augmentation to one frame: `image` RGB uint8 (height, width, 3), `boxes` pixel
    corners with their class (`Box` or `(x1, y1, x2, y2, cls)`). Same arguments, same bytes."""
    if isinstance(request, str):
        request = request_for(request, settings)
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("image must be an RGB uint8 array of shape (height, width, 3)")
    height, width = image.shape[:2]
    kept: list[Box] = []
    dropped = 0
    for box in boxes:
        box = as_box(box).clipped(width, height)
        if box.width > 0 and box.height > 0:
            kept.append(box)
        else:
            dropped += 1
    A = load_albumentations()
    augmenter = AUGMENTERS[request.augmenter]
    random_seed = frame_seed(seed, task_id, frame_id, request.aug_type)
    steps = augmenter.build(request.params, settings.keep_size_crop)
    if not augmenter.spatial:  # colours only: the boxes stay where they are
        out = A.Compose(steps, seed=random_seed)(image=np.ascontiguousarray(image))
        return AugmentedFrame(request.aug_type, np.ascontiguousarray(out["image"], dtype=np.uint8), kept, dropped)
    pipeline = A.Compose(steps, seed=random_seed,
                         bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_index"],
                                                  min_visibility=settings.min_visibility,
                                                  min_area=settings.min_area, clip=True, filter_invalid_bboxes=True))
    corners = np.array([[b.x1, b.y1, b.x2, b.y2] for b in kept], dtype=np.float64).reshape(-1, 4)
    out = pipeline(image=np.ascontiguousarray(image), bboxes=corners, box_index=list(range(len(kept))))
    new_image = np.ascontiguousarray(out["image"], dtype=np.uint8)
    new_h, new_w = new_image.shape[:2]
    new_boxes = []
    for coords, index in zip(out["bboxes"], out["box_index"], strict=True):
        # albumentations works in float32: round to 1/1000 px so 49.9999988 is 50 again
        moved = Box(*(round(float(c), 3) for c in coords[:4]), kept[int(round(float(index)))].cls)
        moved = moved.clipped(new_w, new_h)
        if moved.width > 0 and moved.height > 0:
            new_boxes.append(moved)
    return AugmentedFrame(request.aug_type, new_image, new_boxes, dropped + len(kept) - len(new_boxes))
