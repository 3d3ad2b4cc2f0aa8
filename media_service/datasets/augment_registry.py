"""The augmenters a dataset version's augmentations map to: what each does to a picture and its
boxes (an albumentations 2.0.x pipeline, MIT; `spatial` ones move the boxes with the pixels), the
parameter it takes (`parse_range`: a value or a range, its default, its bounds) and the names an
`aug_map` may give it (ours, albumentations' or the old imgaug ones: `augmenter_name`). Which
platform id means which augmenter, and what each parameter means, is told in `augment_plan.py`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

Range = tuple[float, float]


def load_albumentations():
    """The library, imported on first use, without its update check (a request to PyPI at import)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


# -- augmenters --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Augmenter:
    name: str
    build: Callable[[Range | None, bool], list[Any]]  # (its parameter, keep_size_crop): the albumentations steps
    default: Range | None = None     # None: takes no parameter
    symmetric: bool = False          # a single value v means -v..v (else exactly v)
    fraction: bool = False           # values above 1 are percents
    bounds: Range | None = None      # allowed values after conversion
    spatial: bool = True             # moves pixels (boxes go through it); False: colours only


def _border():
    import cv2

    return {"border_mode": cv2.BORDER_CONSTANT, "fill": 0}


def _fixed(*names: str) -> Callable[[Range | None, bool], list[Any]]:
    return lambda _r, _s: [getattr(load_albumentations(), n)(p=1.0) for n in names]


def _rotate(r, _s):
    return [load_albumentations().Rotate(limit=r, rotate_method="largest_box", crop_border=False, p=1.0, **_border())]


def _blur(r, _s):
    return [load_albumentations().GaussianBlur(blur_limit=0, sigma_limit=r, p=1.0)]


def _noise(r, _s):
    return [load_albumentations().GaussNoise(std_range=r, mean_range=(0.0, 0.0), per_channel=True, p=1.0)]


def _shear(r, _s):
    return [load_albumentations().Affine(shear={"x": r, "y": (0.0, 0.0)}, fit_output=False, p=1.0, **_border())]


def _brightness(r, _s):
    return [load_albumentations().RandomBrightnessContrast(brightness_limit=r, contrast_limit=(0.0, 0.0), p=1.0)]


def _contrast(r, _s):
    return [load_albumentations().RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=r, p=1.0)]


def _hue(r, _s):  # OpenCV's 8-bit hue runs 0..180: half a degree per step
    return [load_albumentations().HueSaturationValue(hue_shift_limit=(r[0] / 2, r[1] / 2),
                                                     sat_shift_limit=(0.0, 0.0), val_shift_limit=(0.0, 0.0), p=1.0)]


def _saturation(r, _s):
    return [load_albumentations().HueSaturationValue(hue_shift_limit=(0.0, 0.0),
                                                     sat_shift_limit=(r[0] * 255, r[1] * 255),
                                                     val_shift_limit=(0.0, 0.0), p=1.0)]


def _gray(_r, _s):
    return [load_albumentations().ToGray(num_output_channels=3, method="weighted_average", p=1.0)]


def _crop(r, keep_size_crop):
    return [load_albumentations().CropAndPad(percent=(-r[1], -r[0]), keep_size=keep_size_crop,
                                             sample_independently=True, p=1.0, **_border())]


def _sharpen(r, _s):
    return [load_albumentations().Sharpen(alpha=r, lightness=(1.0, 1.0), p=1.0)]


_SIGNED = {"symmetric": True, "bounds": (-1.0, 1.0), "fraction": True}   # -v..v, a fraction of full scale
_COLOUR = {"spatial": False}

AUGMENTERS: Mapping[str, Augmenter] = MappingProxyType({a.name: a for a in (
    Augmenter("HorizontalFlip", _fixed("HorizontalFlip")),
    Augmenter("VerticalFlip", _fixed("VerticalFlip")),
    Augmenter("Rotate90", _fixed("Transpose", "HorizontalFlip")),      # clockwise
    Augmenter("Rotate180", _fixed("HorizontalFlip", "VerticalFlip")),
    Augmenter("Rotate270", _fixed("Transpose", "VerticalFlip")),       # counter-clockwise 90
    Augmenter("Rotate", _rotate, (-15.0, 15.0), symmetric=True, bounds=(-180.0, 180.0)),
    Augmenter("GaussianBlur", _blur, (0.5, 1.5), bounds=(0.01, 50.0), **_COLOUR),
    Augmenter("GaussNoise", _noise, (0.02, 0.08), fraction=True, bounds=(0.0, 1.0), **_COLOUR),
    Augmenter("Shear", _shear, (-10.0, 10.0), symmetric=True, bounds=(-45.0, 45.0)),
    Augmenter("Brightness", _brightness, (-0.25, 0.25), **_SIGNED, **_COLOUR),
    Augmenter("Contrast", _contrast, (-0.25, 0.25), **_SIGNED, **_COLOUR),
    Augmenter("Hue", _hue, (-15.0, 15.0), symmetric=True, bounds=(-180.0, 180.0), **_COLOUR),
    Augmenter("Saturation", _saturation, (-0.3, 0.3), **_SIGNED, **_COLOUR),
    Augmenter("ToGray", _gray, **_COLOUR),
    Augmenter("Crop", _crop, (0.0, 0.2), fraction=True, bounds=(0.0, 0.45)),
    Augmenter("Sharpen", _sharpen, (0.2, 0.5), fraction=True, bounds=(0.0, 1.0), **_COLOUR),
)})

# Names an `aug_map` may use for the augmenters above: ours, albumentations' and the old imgaug ones.
AUGMENTER_ALIASES: Mapping[str, str] = MappingProxyType({
    "fliplr": "HorizontalFlip", "flipud": "VerticalFlip", "hflip": "HorizontalFlip", "vflip": "VerticalFlip",
    "rot90": "Rotate90", "rotate90": "Rotate90", "rotate180": "Rotate180", "rotate270": "Rotate270",
    "rotation": "Rotate", "randomrotate": "Rotate",
    "blur": "GaussianBlur", "averageblur": "GaussianBlur",
    "additivegaussiannoise": "GaussNoise", "noise": "GaussNoise",
    "shearx": "Shear", "affineshear": "Shear",
    "multiply": "Brightness", "multiplybrightness": "Brightness", "addtobrightness": "Brightness",
    "randombrightness": "Brightness", "add": "Brightness",
    "linearcontrast": "Contrast", "gammacontrast": "Contrast", "randomcontrast": "Contrast",
    "addtohue": "Hue", "addtosaturation": "Saturation", "multiplysaturation": "Saturation",
    "grayscale": "ToGray", "greyscale": "ToGray", "gray": "ToGray",
    "crop": "Crop", "cropandpad": "Crop", "randomcrop": "Crop",
})


def augmenter_name(value: object) -> str:
    """The augmenter an `aug_map` value names (ours, albumentations' or imgaug's spelling)."""
    folded = re.sub(r"[^a-z0-9]+", "", str(value).lower())
    for name in AUGMENTERS:
        if name.lower() == folded:
            return name
    if folded in AUGMENTER_ALIASES:
        return AUGMENTER_ALIASES[folded]
    raise ValueError(f"unknown augmenter {value!r}; known: {', '.join(AUGMENTERS)}")


# -- parameters ----------------------------------------------------------------------------------
def parse_range(value: Any, augmenter: Augmenter) -> Range | None:
    """A property's parameter as the augmenter's range: a number (or numeric text), a `[min, max]`
    pair, `{"min": a, "max": b}`, `"a..b"`; None or empty: no parameter given."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if augmenter.default is None:
        return None  # takes no parameter: whatever the platform sends is ignored
    pair: tuple[Any, Any] | None = None
    if isinstance(value, Mapping):
        low = next((value[k] for k in ("min", "low", "from", "start") if k in value), None)
        high = next((value[k] for k in ("max", "high", "to", "end") if k in value), None)
        if low is not None and high is not None:
            pair = (low, high)
        elif "value" in value or "values" in value:
            return parse_range(value.get("value", value.get("values")), augmenter)
        else:
            raise ValueError(f"{augmenter.name}: cannot read a range from {value!r}")
    elif isinstance(value, (list, tuple)):
        if len(value) == 1:
            return parse_range(value[0], augmenter)
        if len(value) != 2:
            raise ValueError(f"{augmenter.name}: a range has two numbers, got {value!r}")
        pair = (value[0], value[1])
    elif isinstance(value, str) and ".." in value:
        low_text, _, high_text = value.partition("..")
        pair = (low_text, high_text)
    try:
        if pair is None:
            v = float(value)
            numbers = (-abs(v), abs(v)) if augmenter.symmetric else (v, v)
        else:
            numbers = (float(pair[0]), float(pair[1]))
    except (TypeError, ValueError):
        raise ValueError(f"{augmenter.name}: {value!r} is not a number or a range") from None
    if augmenter.fraction:
        numbers = tuple(n / 100 if abs(n) > 1 else n for n in numbers)
    low, high = sorted(numbers)
    if not all(np.isfinite((low, high))):
        raise ValueError(f"{augmenter.name}: {value!r} is not a finite range")
    if augmenter.bounds and not (augmenter.bounds[0] <= low and high <= augmenter.bounds[1]):
        raise ValueError(f"{augmenter.name}: {value!r} is outside {augmenter.bounds[0]}..{augmenter.bounds[1]}")
    return (low, high)
