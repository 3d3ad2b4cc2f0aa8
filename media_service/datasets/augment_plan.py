"""What a dataset version asks for in augmentations, and the `[Augmentation]` settings that say how.

The version asks for augmentations in `augmentationTypes.IMAGE_LEVEL[].properties[]`, each
`{id, values}` with the platform's upper-case ids, in exactly CONTRACT §2's shape
(`platform_properties`; any other shape is refused). Each id is looked up in `aug_map` (the old
`[Augmentation]` setting of the same name), which names one of the augmenters of `augment_registry.py`;
that name, as the map writes it, is the platform's `<augType>`. An id no augmenter is mapped to fails
the build.

Default map (`DEFAULT_AUG_MAP`, `DEFAULT_RANGE_MAP`): one augmenter per id the platform offers,
with a mild default range, chosen so a trained model sees plausible frames of the same scene
(no extreme colours, no object pushed out by a small change). A property's own parameters win
over `default_ranges`, which wins over the augmenter's default. The old `range_map` divides the
platform's values by id before they are read (`{'BLUR': 10}`: the UI's 15 is sigma 1.5).

| id (normalised)   | augmenter      | parameter (a value or a `[min, max]` range)                  | default      |
|-------------------|----------------|--------------------------------------------------------------|--------------|
| `flip_horizontal` | HorizontalFlip | none: mirrors left-right (x -> width - x)                    |              |
| `flip_vertical`   | VerticalFlip   | none: mirrors top-bottom (y -> height - y)                   |              |
| `clockwise`       | Rotate90       | none (the platform's quarter turn)                           |              |
| `upside_down`     | Rotate180      | none                                                         |              |
| `counter_clockwise` | Rotate270    | none                                                         |              |
| `rotate_90`       | Rotate90       | none: 90 degrees clockwise, width and height swap            |              |
| `rotate_180`      | Rotate180      | none                                                         |              |
| `rotate_270`      | Rotate270      | none: 270 clockwise (90 counter-clockwise)                   |              |
| `rotation`        | Rotate         | degrees, positive counter-clockwise; value v means -v..v     | -15..15      |
| `blur`            | GaussianBlur   | sigma in pixels; value v means exactly v                     | 0.5..1.5     |
| `noise`           | GaussNoise     | standard deviation, fraction of full scale; v means v        | 0.02..0.08   |
| `shear`           | Shear          | degrees along x; value v means -v..v                         | -10..10      |
| `brightness`      | Brightness     | fraction of full scale; value v means -v..v                  | -0.25..0.25  |
| `contrast`        | Contrast       | fraction; value v means -v..v                                | -0.25..0.25  |
| `hue`             | Hue            | degrees on the colour wheel; value v means -v..v             | -15..15      |
| `saturation`      | Saturation     | fraction of full scale; value v means -v..v                  | -0.3..0.3    |
| `grayscale`       | ToGray         | none: three equal channels (the JPEG stays RGB)              |              |
| `crop`            | Crop           | fraction cut from each side, drawn per side; v means v       | 0..0.2       |
| `sharpen`         | Sharpen        | strength 0..1 (alpha); value v means v                       | 0.2..0.5     |

Fractions above 1 are read as percents (`brightness: 20` = 0.2). With `keep_size_crop` (the old
setting, default true) a crop is scaled back to the frame's size; without it the picture shrinks.
Ids are compared lower-cased (`FLIP_HORIZONTAL` is `flip_horizontal`). A switch (no parameter)
applies only when `values[0]` is true; a ranged augmenter takes `values` as its range.
`aug_map` values may also be the old service's imgaug names (`Fliplr`, `Flipud`, `Affine`...);
a map sending `flip_horizontal` to a vertical flip (the old service's swap) is refused.

`augment_apply.py` applies one of the plan's augmentations to one frame.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from media_service.datasets.augment_registry import AUGMENTERS, Augmenter, Range, augmenter_name, parse_range

DEFAULT_AUG_MAP: Mapping[str, str] = MappingProxyType({
    "flip_horizontal": "HorizontalFlip", "flip_vertical": "VerticalFlip",
    # the platform's quarter turns (CONTRACT §2)
    "clockwise": "Rotate90", "upside_down": "Rotate180", "counter_clockwise": "Rotate270",
    "rotate_90": "Rotate90", "rotate_180": "Rotate180", "rotate_270": "Rotate270", "rotation": "Rotate",
    "blur": "GaussianBlur", "noise": "GaussNoise", "shear": "Shear", "brightness": "Brightness",
    "hue": "Hue", "saturation": "Saturation", "grayscale": "ToGray", "crop": "Crop",
    "contrast": "Contrast", "sharpen": "Sharpen",
})
DEFAULT_RANGE_MAP: Mapping[str, Range] = MappingProxyType(
    {aug_id: AUGMENTERS[name].default for aug_id, name in DEFAULT_AUG_MAP.items() if AUGMENTERS[name].default})

# Other spellings of the property ids (after `normalise_id`).
ID_ALIASES: Mapping[str, str] = MappingProxyType({
    "horizontal_flip": "flip_horizontal", "fliplr": "flip_horizontal", "hflip": "flip_horizontal",
    "flip_h": "flip_horizontal", "mirror": "flip_horizontal",
    "vertical_flip": "flip_vertical", "flipud": "flip_vertical", "vflip": "flip_vertical", "flip_v": "flip_vertical",
    "rotate90": "rotate_90", "rotation_90": "rotate_90", "rot90": "rotate_90",
    "rotate180": "rotate_180", "rotation_180": "rotate_180", "rot180": "rotate_180",
    "rotate270": "rotate_270", "rotation_270": "rotate_270", "rot270": "rotate_270",
    "rotate": "rotation", "random_rotation": "rotation",
    "gaussian_blur": "blur", "gaussian_noise": "noise", "greyscale": "grayscale", "gray": "grayscale",
    "grey": "grayscale", "gray_scale": "grayscale", "random_crop": "crop",
})


def normalise_id(value: object) -> str:
    """A property id as looked up: lower case, runs of other characters made one `_`, aliases resolved."""
    text = re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")
    return ID_ALIASES.get(text, text)


# -- settings ----------------------------------------------------------------------------------
def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class AugmentationSettings:
    """The `[Augmentation]` settings: which augmenter each property id means, and how boxes are kept.

    `aug_map` maps property ids to augmenter names; `range_map` (the old service's meaning) property
    ids to a divisor of the platform's values; `default_ranges` property ids to the parameter used
    when the platform sends none; `disabled_augs` property ids never applied; `fraction` the share
    of a version's frames each requested augmentation is applied to (1.0: every frame).
    """

    aug_map: Mapping[str, str] = DEFAULT_AUG_MAP
    default_ranges: Mapping[str, Any] = DEFAULT_RANGE_MAP
    range_map: Mapping[str, float] = MappingProxyType({})
    keep_size_crop: bool = True
    disabled_augs: frozenset[str] = frozenset()
    min_visibility: float = 0.3
    min_area: float = 1.0
    fraction: float = 1.0
    _ranges: Mapping[str, Range] = field(init=False, repr=False, compare=False)
    # Each id's augmenter as the map writes it (`Fliplr` in an old map): the platform's `<augType>`.
    names: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {normalise_id(k): str(v) for k, v in self.aug_map.items()}
        aug_map = {normalise_id(k): augmenter_name(v) for k, v in self.aug_map.items()}
        for aug_id, wrong in (("flip_horizontal", "VerticalFlip"), ("flip_vertical", "HorizontalFlip")):
            if aug_map.get(aug_id) == wrong:
                raise ValueError(f"aug_map sends {aug_id} to {wrong}: that is the old service's swapped flips; "
                                 f"{aug_id} must be {'HorizontalFlip' if wrong == 'VerticalFlip' else 'VerticalFlip'}")
        ranges = {}
        divisors = {}
        for key, value in self.range_map.items():
            divisor = float(value)
            if not divisor > 0:
                raise ValueError(f"range_map divides {key!r}'s values by {value!r}: it must be a positive number")
            divisors[normalise_id(key)] = divisor
        for key, value in self.default_ranges.items():
            aug_id = normalise_id(key)
            if aug_id not in aug_map:
                raise ValueError(f"default_ranges names {key!r}, which aug_map does not map to an augmenter")
            parsed = parse_range(value, AUGMENTERS[aug_map[aug_id]])
            if parsed:
                ranges[aug_id] = parsed
        if not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(f"min_visibility must be within 0..1: {self.min_visibility}")
        if self.min_area < 0:
            raise ValueError(f"min_area must not be negative: {self.min_area}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be within (0, 1]: {self.fraction}")
        object.__setattr__(self, "aug_map", MappingProxyType(aug_map))
        object.__setattr__(self, "disabled_augs", frozenset(normalise_id(a) for a in self.disabled_augs))
        object.__setattr__(self, "_ranges", MappingProxyType(ranges))
        object.__setattr__(self, "range_map", MappingProxyType(divisors))
        object.__setattr__(self, "names", MappingProxyType(names))

    @classmethod
    def from_config(cls, section: Any = None, **overrides: Any) -> AugmentationSettings:
        """Settings from the `[Augmentation]` section (`settings.augmentation`, its values parsed at
        start-up by `media_service.config`) and keyword overrides (the same typed values).
        `aug_map` and `default_ranges` are merged over the defaults (an operator names only what
        changes); the other keys replace them. Keys: aug_map, range_map, default_ranges,
        keep_size_crop, disabled_augs, min_visibility, min_area, fraction."""
        values = {**({f.name: getattr(section, f.name) for f in fields(section)} if section else {}), **overrides}
        known = {"aug_map", "range_map", "default_ranges", "keep_size_crop", "disabled_augs", "min_visibility",
                 "min_area", "fraction"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown augmentation settings: {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for key in ("aug_map", "default_ranges", "range_map"):
            base = {"aug_map": DEFAULT_AUG_MAP, "default_ranges": DEFAULT_RANGE_MAP}.get(key, {})
            kwargs[key] = {**{normalise_id(k): v for k, v in base.items()},
                           **{normalise_id(k): v for k, v in (values.get(key) or {}).items()}}
        if values.get("disabled_augs") is not None:
            kwargs["disabled_augs"] = frozenset(values["disabled_augs"])
        for key in ("keep_size_crop", "min_visibility", "min_area", "fraction"):
            if values.get(key) is not None:
                kwargs[key] = values[key]
        return cls(**kwargs)

    def augmenter(self, aug_id: str) -> Augmenter | None:
        name = self.aug_map.get(normalise_id(aug_id))
        return AUGMENTERS[name] if name else None

    def default_range(self, aug_id: str) -> Range | None:
        aug_id = normalise_id(aug_id)
        augmenter = self.augmenter(aug_id)
        return self._ranges.get(aug_id) or (augmenter.default if augmenter else None)


DEFAULT_SETTINGS = AugmentationSettings()


# -- what a version asks for -------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentationRequest:
    """One augmentation of a version: `aug_type` as the platform names it (file names and the
    frame's `augmentationImages` key), `aug_id` as looked up, the augmenter and its range."""

    aug_type: str
    aug_id: str
    augmenter: str
    params: Range | None = None


@dataclass
class AugmentationPlan:
    requests: list[AugmentationRequest] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)   # asked for, but in disabled_augs


def _key_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_")


def request_for(aug_type: object, settings: AugmentationSettings = DEFAULT_SETTINGS,
                params: Any = None) -> AugmentationRequest:
    """The request for one augmentation id, with optional parameters (a value or a range)."""
    aug_id = normalise_id(aug_type)
    augmenter = settings.augmenter(aug_id)
    if augmenter is None:
        raise ValueError(f"no augmenter is mapped to {aug_type!r} (aug_map)")
    chosen = parse_range(params, augmenter) or settings.default_range(aug_id)
    return AugmentationRequest(_key_safe(str(aug_type)) or aug_id, aug_id, augmenter.name,
                               chosen if augmenter.default else None)


@dataclass(frozen=True)
class PlatformProperty:
    """One `augmentationTypes.IMAGE_LEVEL[].properties[]` entry: the platform's id and its values."""
    id: str
    values: tuple


class AugmentationShapeError(ValueError):
    """`augmentationTypes` is not in the shape CONTRACT §2 pins, or names an id no augmenter has."""


_SHAPE = ("augmentationTypes must be {IMAGE_LEVEL: [{id, properties: [{id, values: [...]}]}], "
          "BOUNDING_BOX_LEVEL: [...]}")


def platform_properties(augmentation_types: Any) -> list[PlatformProperty]:
    """The image-level properties of a version's `augmentationTypes`, exactly in CONTRACT §2's shape
    (anything else raises `AugmentationShapeError` saying where). Absent or empty: none."""
    if augmentation_types in (None, {}, []):
        return []
    if not isinstance(augmentation_types, Mapping):
        raise AugmentationShapeError(f"{_SHAPE}; got {type(augmentation_types).__name__}")
    extra = set(augmentation_types) - {"IMAGE_LEVEL", "BOUNDING_BOX_LEVEL"}
    if extra:
        raise AugmentationShapeError(f"{_SHAPE}; unexpected keys {sorted(extra)}")
    entries = augmentation_types.get("IMAGE_LEVEL") or []
    if not isinstance(entries, list):
        raise AugmentationShapeError(f"{_SHAPE}; IMAGE_LEVEL is a {type(entries).__name__}")
    found: list[PlatformProperty] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("properties"), list):
            raise AugmentationShapeError(f"{_SHAPE}; IMAGE_LEVEL[{i}] has no properties list")
        for j, prop in enumerate(entry["properties"]):
            where = f"IMAGE_LEVEL[{i}].properties[{j}]"
            if not isinstance(prop, Mapping) or not isinstance(prop.get("id"), str) or not prop["id"].strip():
                raise AugmentationShapeError(f"{_SHAPE}; {where} has no id")
            if not isinstance(prop.get("values"), list):
                raise AugmentationShapeError(f"{_SHAPE}; {where} ({prop['id']}) has no values list")
            found.append(PlatformProperty(prop["id"].strip(), tuple(prop["values"])))
    return found


def requested_augmentations(augmentation_types: Any,
                            settings: AugmentationSettings = DEFAULT_SETTINGS) -> AugmentationPlan:
    """The augmentations a version asks for (`platform_properties`), in the order given, each once.

    Each id goes through `aug_map`; an id in `disabled_augs` is left out (listed in `disabled`); an
    id no augmenter is mapped to fails at once (`AugmentationShapeError` naming every such id), never
    silently dropped. An augmenter without a parameter (flips, quarter turns, grey) is a switch:
    applied only when `values[0]` is true. Any other takes `values` as its range (the UI's numbers)."""
    plan, unknown, seen = AugmentationPlan(), [], set()
    for prop in platform_properties(augmentation_types):
        aug_id = normalise_id(prop.id)
        if aug_id in seen:
            continue
        seen.add(aug_id)
        if aug_id in settings.disabled_augs:
            plan.disabled.append(prop.id)
            continue
        augmenter = settings.augmenter(aug_id)
        if augmenter is None:
            unknown.append(prop.id)
            continue
        if augmenter.default is None:  # a switch
            if prop.values and _bool(prop.values[0]):
                plan.requests.append(AugmentationRequest(_key_safe(settings.names[aug_id]), aug_id, augmenter.name))
            continue
        values = list(prop.values)
        divisor = settings.range_map.get(aug_id)
        if divisor and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            values = [v / divisor for v in values]  # the old range_map: the UI's numbers, scaled
        try:
            params = parse_range(values, augmenter) or settings.default_range(aug_id)
        except ValueError as error:
            raise AugmentationShapeError(f"augmentation {prop.id!r}: {error}") from None
        plan.requests.append(AugmentationRequest(_key_safe(settings.names[aug_id]), aug_id, augmenter.name, params))
    if unknown:
        raise AugmentationShapeError(f"augmentation ids no augmenter is mapped to: {', '.join(unknown)} "
                                     "(add them to [Augmentation] aug_map, or to disabled_augs to leave them out)")
    return plan
