"""Label names the detectors produce.

- `COCO_TF_LABELS`: the TensorFlow object-detection API's 90-id COCO map (ids 1..90 with ten gaps),
  which SSD MobileNet v2 COCO's class ids follow (not the 0..79 order of YOLO's `coco.names`).
- `darknet_label`: the old service's renaming of a customer's Darknet class names.
- `COCO_LABELS`: the 80 COCO names in class order (YOLO's 0..79 ids; the same names as above).
- `FACE`: the label of every face box, whatever found it.
"""
from __future__ import annotations

FACE = "face"

# TensorFlow models' research/object_detection/data/mscoco_label_map.pbtxt (display names).
COCO_TF_LABELS: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}

COCO_LABELS: tuple[str, ...] = tuple(COCO_TF_LABELS.values())

# The old service's display names for the customer's Darknet classes; other names pass unchanged.
DARKNET_LABEL_NAMES: dict[str, str] = {
    "name_tag": "Name Tag",
    "face": "Face",
    "laparotomy_sponge": "Lap Sponge",
}


def darknet_label(name: str) -> str:
    """A Darknet class name as the platform shows it (`name_tag` -> `Name Tag`, ...)."""
    return DARKNET_LABEL_NAMES.get(name, name)
