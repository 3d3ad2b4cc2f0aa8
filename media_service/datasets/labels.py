"""Label files of a dataset version: a frame's boxes in, YOLO lines out (CONTRACT §2, §3).

A YOLO line is `<classIndex> <cx> <cy> <w> <h>`, the centre and size normalised to 0..1 by the
size of the picture the boxes were drawn on, 6 decimals. The class index is the position, in the
version's `labelAttributeList`, of the enabled entry matching the box. When no entry is enabled
the version is in DEFAULT mode: the line starts with the box's label string instead (a label may
hold spaces, so read such a line from the right: `line.rsplit(maxsplit=4)`).

Boxes are measured in task-video pixels (`boundaries.x/y/w/h`, top-left corner). Pass that size
as `width`/`height`: the normalised line then holds for the same frame at any resolution.

Matching a box to an entry (`LabelScheme.class_index`):

* The label: the box's `boundaries.label` (or a top-level `label`) equals the entry's `mainLabel`
  after stripping surrounding blanks, case kept (labels are the project's own names; `Car` and
  `car` may be two classes).
* The attributes: the box's attributes are `boundaries.attributeValues` updated with the
  top-level `attributeValues` (the top-level one wins on a clash: it is where the annotation
  tool keeps the state, as in `{"state": "Ready"}`). An entry constrains only the attributes it
  names with at least one value. Names and values are compared as text, stripped and
  case-folded (`Ready` = `ready`, `1` = 1); a box value may be a list (multi-select), one common
  value is enough. Missing, empty or unreadable `attributes` on an entry mean "any attributes".
* An entry matches a box with its label unless the box has a constrained attribute with none of
  the entry's values (a conflict). A box without that attribute at all does not conflict: the
  list may be the label's definition (every value the attribute can take), and a box whose
  attribute was never filled in still belongs to its label.
* Of the enabled entries that match, the one the box satisfies most wins (the most constrained
  attributes the box has with an allowed value), then the one with the fewest constraints (a
  box without attributes goes to `car`, not to `car (state=Parked)`), then the lowest position.
  So with `car` and `car (state=Parked)` enabled, a parked car is `car (state=Parked)`, a moving
  one and one without a state are `car`.
* Only enabled entries take part: a box that matches only disabled entries is dropped and
  counted under its label, like a box whose label the version does not know.
* Accepted shapes of an entry's `attributes` (the Node side's shape is not pinned down, so all
  plausible ones are read): `{}`; `{"state": "Ready"}`; `{"state": ["Ready", "Moving"]}`;
  `{"state": {"values": [...]}}`; one item or a list of items `{"key" | "name" | "label" |
  "attributeName": name, "values" | "value" | "selectedValues" | "attributeValues" | "valueName":
  value or values}`, where each value may itself be `{"valueName" | "value" | "name" | "label":
  text}`; and `"name=value"` / `"name:value"` strings in such a list. Bare names without values
  constrain nothing.
* An entry's `isEnabled` may be a bool or `"true"`/`"false"`; a missing one counts as enabled.

Geometry: a negative width or height is turned around (a box dragged up or left); the box is
clipped to the picture; one with no area left after clipping is dropped and counted
(`dropped_zero_area`); one whose numbers are missing or not finite is dropped and counted
(`dropped_invalid`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from media_service.detectors import Corners

YOLO = "YOLO"
DEFAULT = "DEFAULT"

_NAME_KEYS = ("key", "name", "label", "attributeName", "attribute", "attributeKey")
_VALUE_KEYS = ("values", "value", "selectedValues", "selectedValue", "attributeValues", "attributeValue",
               "valueName", "options")
_TEXT_KEYS = ("valueName", "value", "name", "label")


@dataclass(frozen=True, slots=True)
class Box(Corners):
    """A label box in pixels, corners `(x1, y1)` top-left and `(x2, y2)` bottom-right (`Corners`, as
    a detection's), with `cls`: the class index (YOLO mode) or the label string (DEFAULT mode).
    """

    cls: int | str

    def yolo_line(self, width: float, height: float) -> str:
        """`<cls> <cx> <cy> <w> <h>` normalised by the picture size (clipped to 0..1), 6 decimals."""
        b = self.clipped(width, height)
        numbers = ((b.x1 + b.x2) / 2 / width, (b.y1 + b.y2) / 2 / height, b.width / width, b.height / height)
        return " ".join([str(self.cls), *(_fmt(v) for v in numbers)])


def _fmt(value: float) -> str:
    text = f"{min(max(value, 0.0), 1.0):.6f}"
    return "0.000000" if text == "-0.000000" else text


def as_box(value: Box | Sequence[Any]) -> Box:
    """A `Box`, or a `(x1, y1, x2, y2, cls)` sequence turned into one."""
    if isinstance(value, Box):
        return value
    x1, y1, x2, y2, cls = value
    return Box(float(x1), float(y1), float(x2), float(y2), cls)


# -- reading the version's labelAttributeList ---------------------------------------------------
def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().casefold()


def _value_texts(value: Any) -> frozenset[str]:
    """Every text a value holds: a scalar, a list of them, or dicts naming one (`valueName`...)."""
    if value is None:
        return frozenset()
    if isinstance(value, Mapping):
        for key in _VALUE_KEYS + _TEXT_KEYS:
            if key in value:
                return _value_texts(value[key])
        return frozenset()
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset().union(*(_value_texts(v) for v in value)) if value else frozenset()
    text = _norm(value)
    return frozenset([text]) if text else frozenset()


def _constraints(attributes: Any) -> dict[str, frozenset[str]]:
    """An entry's attribute constraints: name -> allowed values; names without values are left out."""
    found: dict[str, frozenset[str]] = {}

    def add(name: Any, values: Any) -> None:
        key = _norm(name) if name is not None else ""
        allowed = _value_texts(values)
        if key and allowed:
            found[key] = found.get(key, frozenset()) | allowed

    if isinstance(attributes, Mapping) and any(k in attributes for k in _NAME_KEYS) \
            and any(k in attributes for k in _VALUE_KEYS):
        attributes = [attributes]  # one item of the list form
    if isinstance(attributes, Mapping):
        for name, values in attributes.items():
            add(name, values)
    elif isinstance(attributes, (list, tuple)):
        for item in attributes:
            if isinstance(item, Mapping):
                name = next((item[k] for k in _NAME_KEYS if item.get(k) not in (None, "")), None)
                values = next((item[k] for k in _VALUE_KEYS if k in item), None)
                add(name, values)
            elif isinstance(item, str):
                for sep in ("=", ":"):
                    if sep in item:
                        name, _, value = item.partition(sep)
                        add(name, value)
                        break
    return found


def _enabled(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().casefold() not in ("false", "0", "no", "off", "")
    return bool(value)


def _label_text(value: Any) -> str:
    if isinstance(value, Mapping):
        value = next((value[k] for k in ("label", "name", "key", "mainLabel") if value.get(k)), "")
    return "" if value is None else str(value).strip()


@dataclass(frozen=True)
class LabelEntry:
    position: int
    label: str
    constraints: Mapping[str, frozenset[str]]
    enabled: bool

    @property
    def name(self) -> str:
        """A readable class name: the label, with its attribute constraints when it has some."""
        if not self.constraints:
            return self.label
        parts = ", ".join(f"{k}={'|'.join(sorted(v))}" for k, v in sorted(self.constraints.items()))
        return f"{self.label} ({parts})"

    def score(self, label: str, attributes: Mapping[str, frozenset[str]]) -> int | None:
        """How many constraints the box satisfies, or None when it does not match (see the module's doc)."""
        if label != self.label:
            return None
        satisfied = 0
        for name, allowed in self.constraints.items():
            values = attributes.get(name)
            if values:
                if not values & allowed:
                    return None
                satisfied += 1
        return satisfied


@dataclass(frozen=True)
class LabelScheme:
    """A version's `labelAttributeList`, read once and used for every frame of the version."""

    entries: tuple[LabelEntry, ...]

    @classmethod
    def from_list(cls, label_attribute_list: Iterable[Mapping[str, Any]] | None) -> LabelScheme:
        entries = []
        for position, entry in enumerate(label_attribute_list or ()):
            entry = entry if isinstance(entry, Mapping) else {}
            entries.append(LabelEntry(position, _label_text(entry.get("mainLabel")),
                                      _constraints(entry.get("attributes")), _enabled(entry.get("isEnabled"))))
        return cls(tuple(entries))

    @property
    def mode(self) -> str:
        """`YOLO` when an entry is enabled (the key of the frame's `textFiles`), else `DEFAULT`."""
        return YOLO if any(e.enabled and e.label for e in self.entries) else DEFAULT

    @property
    def class_names(self) -> list[str]:
        """One name per position (disabled entries included, so index i is class i everywhere)."""
        return [e.name or f"class_{e.position}" for e in self.entries]

    def class_index(self, label: str, attributes: Mapping[str, frozenset[str]]) -> int | None:
        best: tuple[int, int, int] | None = None
        for entry in self.entries:
            score = entry.score(label, attributes) if entry.enabled else None
            if score is not None:
                rank = (-score, len(entry.constraints), entry.position)
                best = rank if best is None or rank < best else best
        return None if best is None else best[2]


# -- one frame ---------------------------------------------------------------------------------
@dataclass
class LabelResult:
    """The label file of one frame and what was left out of it."""

    mode: str                                  # YOLO or DEFAULT
    lines: list[str] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)   # kept boxes, clipped, pixels; same order as lines
    clipped: int = 0                           # kept boxes that reached outside the picture
    dropped_zero_area: int = 0
    dropped_invalid: int = 0
    dropped_unmatched: dict[str, int] = field(default_factory=dict)   # label -> boxes

    @property
    def text(self) -> str:
        """The file's content: one line per box, each ending in a newline ("" for no boxes)."""
        return "".join(line + "\n" for line in self.lines)

    @property
    def dropped(self) -> int:
        return self.dropped_zero_area + self.dropped_invalid + sum(self.dropped_unmatched.values())


def box_attributes(box: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """A stored box's attributes, name -> values as compared (see the module's doc)."""
    boundaries = box.get("boundaries") if isinstance(box.get("boundaries"), Mapping) else {}
    merged: dict[str, Any] = {}
    for source in (boundaries.get("attributeValues"), box.get("attributeValues")):
        if isinstance(source, Mapping):
            merged.update(source)
    return {_norm(k): _value_texts(v) for k, v in merged.items() if _norm(k)}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def frame_labels(boxes: Iterable[Mapping[str, Any]] | None, scheme: LabelScheme | Iterable[Mapping[str, Any]] | None,
                 width: int, height: int, scale: tuple[float, float] = (1.0, 1.0)) -> LabelResult:
    """The label file of one frame from its stored `boxes` and the version's `labelAttributeList`.

    `scheme` is a `LabelScheme` (read the list once per version) or the list itself; `width` and
    `height` the size of the picture; `scale` (x, y) takes the boxes from the task video's pixels,
    where they are measured, to that picture's.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive: {width}x{height}")
    if not isinstance(scheme, LabelScheme):
        scheme = LabelScheme.from_list(scheme)
    mode = scheme.mode
    result = LabelResult(mode)
    for box in boxes or ():
        if not isinstance(box, Mapping):
            result.dropped_invalid += 1
            continue
        boundaries = box.get("boundaries") if isinstance(box.get("boundaries"), Mapping) else box
        label = _label_text(boundaries.get("label", box.get("label")))
        if mode == YOLO:
            cls: int | str | None = scheme.class_index(label, box_attributes(box))
        else:
            cls = label or None
        if cls is None:
            result.dropped_unmatched[label] = result.dropped_unmatched.get(label, 0) + 1
            continue
        x, y, w, h = (_number(boundaries.get(k)) for k in ("x", "y", "w", "h"))
        if x is None or y is None or w is None or h is None:
            result.dropped_invalid += 1
            continue
        if w < 0:
            x, w = x + w, -w
        if h < 0:
            y, h = y + h, -h
        x, y, w, h = x * scale[0], y * scale[1], w * scale[0], h * scale[1]
        raw = Box(x, y, x + w, y + h, cls)
        kept = raw.clipped(width, height)
        if kept.width <= 0 or kept.height <= 0:
            result.dropped_zero_area += 1
            continue
        if kept != raw:
            result.clipped += 1
        result.boxes.append(kept)
        result.lines.append(kept.yolo_line(width, height))
    return result
