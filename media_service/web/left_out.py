"""What a person is told when auto-annotation left detections out because the project lacks their
labels (issue 33: a run that kept no box said "done, 100 %" and nothing else)."""
from __future__ import annotations

SHOWN = 5  # labels named; the rest are counted


def left_out_warning(annotation: dict | None) -> str | None:
    """`annotation` is a run's report (`boxes`, `labels_left_out` {detector label: count}); None when
    nothing was left out. E.g. "0 boxes kept: 1,835 person, 735 car not in the project's labels; add
    them or map them with [Annotation] label_map"."""
    if not isinstance(annotation, dict):
        return None
    left_out = {str(label): count for label, count in (annotation.get("labels_left_out") or {}).items()
                if isinstance(count, int) and count > 0}
    if not left_out:
        return None
    ranked = sorted(left_out.items(), key=lambda item: (-item[1], item[0]))
    named = ", ".join(f"{count:,} {label}" for label, count in ranked[:SHOWN])
    if len(ranked) > SHOWN:
        named += f" and {sum(count for _, count in ranked[SHOWN:]):,} of {len(ranked) - SHOWN} more labels"
    boxes = annotation.get("boxes") or 0
    return (f"{boxes:,} {'box' if boxes == 1 else 'boxes'} kept: {named} not in the project's labels; "
            "add them or map them with [Annotation] label_map")
