"""Which detections become boxes, and under which of the project's labels.

A detector's label is matched to the project's labels (`AnnotationProject.labels[].label`) without
regard to case, after `[Annotation] label_map` (e.g. `person: Staff`) renames it. Labels the
project does not have are left out and counted; `allow_labels` keeps only the named detector
labels; `min_scores` sets a minimum score per detector label; at most `max_boxes_per_frame` boxes
are kept per frame, the highest scores first.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from media_service.detectors import Detection
from media_service.platform_docs import label_color


@dataclass
class LabelPolicy:
    names: dict[str, str]            # detector label (lower case) -> project label as the project writes it
    colors: dict[str, str]           # project label -> colour
    min_scores: dict[str, float]     # detector label (lower case) -> minimum score
    allowed: frozenset[str] | None   # detector labels (lower case) to keep; None: all
    max_boxes: int
    left_out: Counter = field(default_factory=Counter)   # detector labels the project lacks

    @classmethod
    def build(cls, project_labels: list[dict], annotation) -> "LabelPolicy":
        """The policy for a project's labels under the `[Annotation]` section (its values parsed at
        start-up: `label_map` and `min_scores` are mappings)."""
        own = {}
        colors = {}
        for entry in project_labels:
            name = str(entry.get("label") or "").strip()
            if name:
                own.setdefault(name.lower(), name)
                colors[name] = str(entry.get("color") or label_color(name))
        renamed = {label.lower(): target for label, target in annotation.label_map.items()}
        names = {label: own[target.lower()] for label, target in renamed.items() if target.lower() in own}
        for lower, name in own.items():
            names.setdefault(lower, name)
        scores = {label.lower(): score for label, score in annotation.min_scores.items()}
        allowed = frozenset(label.lower() for label in annotation.allow_labels) or None
        return cls(names, colors, scores, allowed, annotation.max_boxes)

    def wants(self, label: str) -> bool:
        """Whether detections labelled `label` can become boxes in this project."""
        label = label.lower()
        return label in self.names and (self.allowed is None or label in self.allowed)

    def keep(self, detections: list[Detection]) -> list[tuple[str, Detection]]:
        """(project label, detection) for the detections that become boxes, best first."""
        kept = []
        for detection in detections:
            label = detection.label.lower()
            if self.allowed is not None and label not in self.allowed:
                continue
            if detection.score < self.min_scores.get(label, 0.0):
                continue
            if label not in self.names:
                self.left_out[detection.label] += 1
                continue
            kept.append((self.names[label], detection))
        kept.sort(key=lambda pair: -pair[1].score)
        return kept[:self.max_boxes]
