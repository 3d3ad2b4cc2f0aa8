"""The dataset builder's library (issue 13): object keys, label lines, augmentations, exports.

Plain values in, values or files out: no database, no storage. Label lines are recomputed by
hand; augmented boxes are checked against the coloured object drawn into the frame; COCO files
are read back with pycocotools and data.yaml with PyYAML.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from media_service.config import load_settings
from media_service.datasets import keys
from media_service.datasets.augment_apply import augment_frame, frame_seed, is_selected
from media_service.datasets.augment_plan import (
    DEFAULT_AUG_MAP,
    AugmentationSettings,
    AugmentationShapeError,
    request_for,
    requested_augmentations,
)
from media_service.datasets.exports import (
    ExportRecord,
    _write_zip,
    choose_samples,
    coco_annotation_id,
    coco_image_id,
    split_name,
    write_export,
    write_samples_zip,
)
from media_service.datasets.labels import DEFAULT, YOLO, Box, LabelScheme, frame_labels
from tests.conftest import ROOT

GROUP, TASK, VERSION_ID = "64b7f0c2a1b2c3d4e5f60718", "64b7f0c2a1b2c3d4e5f60719", "64b7f0c2a1b2c3d4e5f6071a"


# -- keys --------------------------------------------------------------------------------------
def test_keys_follow_the_contract_layout():
    base = f"dataset/{GROUP}/{TASK}/7"
    assert keys.frame_image_key(GROUP, TASK, 7) == f"{base}/7.jpg"
    assert keys.frame_thumbnail_key(GROUP, TASK, 7) == f"{base}/7_thumbnail.jpg"
    assert keys.frame_labels_key(GROUP, TASK, 7, "1.2.0") == f"{base}/1.2.0_7.txt"
    assert keys.augmentation_image_key(GROUP, TASK, 7, "augmentation", "flip_horizontal") == \
        f"{base}/augmentation/flip_horizontal_7.jpg"
    assert keys.augmentation_thumbnail_key(GROUP, TASK, 7, "augmentation", "flip_horizontal") == \
        f"{base}/augmentation/flip_horizontal_7_thumbnail.jpg"
    assert keys.augmentation_labels_key(GROUP, TASK, 7, "augmentation", "flip_horizontal", "1.2.0") == \
        f"{base}/augmentation/1.2.0_flip_horizontal_7.txt"
    assert keys.samples_zip_key(GROUP, VERSION_ID) == f"dataset/{GROUP}/{VERSION_ID}/samples.zip"
    assert keys.export_zip_key(GROUP, VERSION_ID, "coco") == f"dataset/{GROUP}/{VERSION_ID}/exports/coco.zip"
    assert keys.frame_image_key(GROUP, TASK, "12") == f"dataset/{GROUP}/{TASK}/12/12.jpg"


@pytest.mark.parametrize("call", [
    lambda: keys.frame_image_key(GROUP, TASK, 0),                      # frames are 1-based
    lambda: keys.frame_image_key(GROUP, TASK, True),
    lambda: keys.frame_image_key("../other", TASK, 1),
    lambda: keys.frame_image_key(GROUP, "a/b", 1),
    lambda: keys.frame_labels_key(GROUP, TASK, 1, "1.0"),              # versionNo is x.y.z
    lambda: keys.frame_labels_key(GROUP, TASK, 1, "1.0.0/../x"),
    lambda: keys.augmentation_image_key(GROUP, TASK, 1, "../up", "blur"),
    lambda: keys.augmentation_image_key(GROUP, TASK, 1, "aug", "blur/x"),
    lambda: keys.samples_zip_key(GROUP, ""),
])
def test_keys_refuse_parts_that_would_leave_their_folder(call):
    with pytest.raises(ValueError):
        call()


# -- labels ------------------------------------------------------------------------------------
W, H = 640, 480
LABELS = [
    {"mainLabel": "car", "attributes": {}, "isEnabled": True},                                       # 0
    {"mainLabel": "car", "attributes": {"state": "Parked"}, "isEnabled": True},                      # 1
    {"mainLabel": "person", "attributes": [{"key": "pose", "values": [{"valueName": "Walking"}]}],  # 2
     "isEnabled": True},
    {"mainLabel": "person", "attributes": [{"key": "pose", "values": [{"valueName": "Standing"}]}],  # 3
     "isEnabled": True},
    {"mainLabel": "truck", "attributes": {}, "isEnabled": False},                                    # 4
    {"mainLabel": "bike", "attributes": {"color": ["red", "blue"]}, "isEnabled": "true"},            # 5
]


def stored_box(index, label, x, y, w, h, attributes=None, inner=None):
    """A box as the contract stores it (the auto-annotation shape)."""
    return {"id": index,
            "boundaries": {"id": index, "type": "rectangle", "label": label, "color": "#ff0000",
                           "status": "completed", "isPermanent": True, "x": x, "y": y, "w": w, "h": h,
                           "attributeValues": inner or {}, "autoLable_confidance": "0.9"},
            "attributeValues": attributes if attributes is not None else {"state": "Ready"}}


FRAME_BOXES = [
    stored_box(0, "car", 64, 48, 128, 96, {"state": "Moving"}),            # state conflicts with 1: generic car
    stored_box(1, "car", 320, 240, 64, 48, {"state": "parked "}),         # case and blanks ignored: class 1
    stored_box(2, "car", 0, 0, 32, 24, {}),                               # no attributes: generic car
    stored_box(3, "person", 96, 96, 64, 192, {}, inner={"pose": "Walking"}),
    stored_box(4, "person", 480, 0, 64, 96, {"pose": "Standing"}),
    stored_box(5, "person", 10, 10, 10, 10, {"pose": "Sitting"}),         # no entry allows Sitting
    stored_box(6, "truck", 10, 10, 10, 10),                               # truck is disabled
    stored_box(7, "bike", 320, 0, 32, 48, {"color": ["green", "blue"]}),  # multi-select: blue is enough
    stored_box(8, "car", 600, 432, 80, 96, {}),                           # reaches out: clipped
    stored_box(9, "car", 700, 10, 20, 20, {}),                            # wholly outside: nothing left
    stored_box(10, "car", 10, 10, 0, 20, {}),                             # no width
    stored_box(11, "car", 192, 96, -64, 48, {}),                          # dragged leftwards
    stored_box(12, "dog", 10, 10, 10, 10),                                # a label the version does not know
    stored_box(13, "car", "abc", 10, 10, 10),                             # not a number
]


def test_label_lines_recomputed_by_hand():
    result = frame_labels(FRAME_BOXES, LABELS, W, H)
    assert result.mode == YOLO
    assert result.lines == [
        "0 0.200000 0.200000 0.200000 0.200000",   # (64+64)/640, (48+48)/480, 128/640, 96/480
        "1 0.550000 0.550000 0.100000 0.100000",   # (320+32)/640, (240+24)/480
        "0 0.025000 0.025000 0.050000 0.050000",   # 16/640, 12/480, 32/640, 24/480
        "2 0.200000 0.400000 0.100000 0.400000",   # pose from boundaries.attributeValues
        "3 0.800000 0.100000 0.100000 0.200000",
        "5 0.525000 0.050000 0.050000 0.100000",
        "0 0.968750 0.950000 0.062500 0.100000",   # clipped to x 600..640, y 432..480
        "0 0.250000 0.250000 0.100000 0.100000",   # x 128..192
    ]
    assert result.text == "".join(line + "\n" for line in result.lines)
    assert result.boxes[6] == Box(600, 432, 640, 480, 0)
    assert result.clipped == 1
    assert result.dropped_zero_area == 2
    assert result.dropped_invalid == 1
    assert result.dropped_unmatched == {"person": 1, "truck": 1, "dog": 1}
    assert result.dropped == 6 and len(result.lines) + result.dropped == len(FRAME_BOXES)


def test_the_most_specific_enabled_entry_wins_then_the_simplest_then_the_first():
    scheme = LabelScheme.from_list([
        {"mainLabel": "car", "attributes": {"state": "Parked"}, "isEnabled": True},
        {"mainLabel": "car", "isEnabled": True},                                   # no attributes: any
        {"mainLabel": "car", "attributes": {"state": "Parked"}, "isEnabled": True},  # a duplicate: never chosen
        {"mainLabel": "van", "attributes": "garbage", "isEnabled": True},           # unreadable: any
        {"mainLabel": "bus", "attributes": {"key": "size", "values": ["big"]}},     # one item; isEnabled missing
    ])
    boxes = [stored_box(0, "car", 0, 0, 64, 48, {"state": "Parked"}), stored_box(1, "car", 0, 0, 64, 48, {}),
             stored_box(2, "car", 0, 0, 64, 48, {"state": "Moving"}), stored_box(3, "van", 0, 0, 64, 48),
             stored_box(4, "bus", 0, 0, 64, 48, {"size": "BIG"}), stored_box(5, "bus", 0, 0, 64, 48, {"size": "small"})]
    result = frame_labels(boxes, scheme, W, H)
    assert [line.split()[0] for line in result.lines] == ["0", "1", "1", "3", "4"]
    assert result.dropped_unmatched == {"bus": 1}
    assert scheme.class_names == ["car (state=parked)", "car", "car (state=parked)", "van", "bus (size=big)"]


def test_default_mode_writes_label_strings_when_no_label_is_enabled():
    disabled = [{**entry, "isEnabled": False} for entry in LABELS]
    boxes = [stored_box(0, "truck", 64, 48, 128, 96), stored_box(1, "traffic light", 320, 240, 64, 48),
             stored_box(2, "car", 700, 0, 10, 10), stored_box(3, "", 0, 0, 10, 10)]
    result = frame_labels(boxes, disabled, W, H)
    assert result.mode == DEFAULT == LabelScheme.from_list(disabled).mode
    assert result.lines == ["truck 0.200000 0.200000 0.200000 0.200000",
                            "traffic light 0.550000 0.550000 0.100000 0.100000"]
    assert result.lines[1].rsplit(maxsplit=4)[0] == "traffic light"
    assert result.dropped_zero_area == 1 and result.dropped_unmatched == {"": 1}
    assert frame_labels(boxes, [], W, H).mode == DEFAULT
    assert frame_labels([], LABELS, W, H).text == ""


# -- augmentations -----------------------------------------------------------------------------
FH, FW = 240, 320
RED = (220, 30, 30)
OBJECT = Box(60, 50, 140, 110, 0)


def frame_with_object(obj: Box = OBJECT, colour=RED) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(30, 90, size=(FH, FW, 3), dtype=np.uint8)   # a grey, textured background
    image[int(obj.y1):int(obj.y2), int(obj.x1):int(obj.x2)] = colour
    return image


def red_extent(image: np.ndarray) -> Box:
    mask = (image[..., 0] > 150) & (image[..., 1] < 100) & (image[..., 2] < 100)
    ys, xs = np.nonzero(mask)
    assert len(xs), "the object left the picture"
    return Box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, "measured")


def iou(a: Box, b: Box) -> float:
    inter = Box(max(a.x1, b.x1), max(a.y1, b.y1), min(a.x2, b.x2), min(a.y2, b.y2), None).area
    return inter / (a.area + b.area - inter)


@pytest.mark.parametrize("aug_type, params", [
    ("flip_horizontal", None), ("flip_vertical", None), ("rotate_90", None), ("rotate_180", None),
    ("rotate_270", None), ("rotation", 25), ("rotation", [-30, -30]), ("shear", [12, 12]), ("crop", 0.1),
])
def test_a_transformed_box_still_covers_the_object(aug_type, params):
    image = frame_with_object()
    out = augment_frame(image, [OBJECT], request_for(aug_type, params=params), seed=11, task_id=TASK, frame_id=3)
    assert len(out.boxes) == 1 and out.boxes[0].cls == 0 and out.dropped == 0
    assert iou(out.boxes[0], red_extent(out.image)) > 0.8, (out.boxes[0], red_extent(out.image))


def test_flips_and_quarter_turns_move_pixels_the_right_way():
    image = frame_with_object()

    def run(aug):
        return augment_frame(image, [OBJECT], aug, seed=1, task_id=TASK, frame_id=1)

    horizontal = run("flip_horizontal")
    assert np.array_equal(horizontal.image, image[:, ::-1])        # left-right mirror (the old service flipped ud)
    assert horizontal.boxes == [Box(FW - 140, 50, FW - 60, 110, 0)]
    vertical = run("flip_vertical")
    assert np.array_equal(vertical.image, image[::-1])
    assert vertical.boxes == [Box(60, FH - 110, 140, FH - 50, 0)]
    quarter = run("rotate_90")                                      # clockwise: width and height swap
    assert np.array_equal(quarter.image, np.rot90(image, -1)) and quarter.image.shape == (FW, FH, 3)
    assert quarter.boxes == [Box(FH - 110, 60, FH - 50, 140, 0)]
    assert np.array_equal(run("rotate_180").image, np.rot90(image, 2))
    assert np.array_equal(run("rotate_270").image, np.rot90(image, 1))
    assert "\n" in horizontal.label_text and horizontal.label_text.startswith("0 0.687500 0.333333 0.250000 0.250000")


def test_a_box_pushed_out_by_a_crop_is_dropped():
    centre = Box(130, 90, 190, 150, 0)
    corner = Box(0, 0, 30, 30, 1)
    image = frame_with_object(centre)
    image[0:30, 0:30] = (30, 200, 30)
    request = request_for("crop", params=[0.2, 0.2])                # 20 % off every side
    out = augment_frame(image, [centre, corner], request, seed=3, task_id=TASK, frame_id=1)
    assert out.image.shape == image.shape                           # keep_size_crop: scaled back
    assert [b.cls for b in out.boxes] == [0] and out.dropped == 1
    assert iou(out.boxes[0], red_extent(out.image)) > 0.8
    smaller = augment_frame(image, [centre, corner], request, seed=3, task_id=TASK, frame_id=1,
                            settings=AugmentationSettings.from_config(keep_size_crop=False))
    assert smaller.image.shape == (FH - 96, FW - 128, 3) and [b.cls for b in smaller.boxes] == [0]
    assert smaller.boxes[0] == Box(130 - 64, 90 - 48, 190 - 64, 150 - 48, 0)


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("aug_type", sorted(DEFAULT_AUG_MAP))
def test_the_same_seed_gives_byte_identical_output(aug_type):
    image = frame_with_object()
    boxes = [OBJECT, Box(200, 150, 260, 200, 1)]
    first = augment_frame(image, boxes, aug_type, seed=2024, task_id=TASK, frame_id=5)
    again = augment_frame(image.copy(), list(boxes), aug_type, seed=2024, task_id=TASK, frame_id=5)
    assert jpeg(first.image) == jpeg(again.image) and first.image.tobytes() == again.image.tobytes()
    assert first.boxes == again.boxes and first.label_text == again.label_text
    assert first.image.dtype == np.uint8 and first.image.shape[2] == 3


def test_the_seed_frame_and_type_change_the_draws():
    image = frame_with_object()
    base = augment_frame(image, [OBJECT], "noise", seed=1, task_id=TASK, frame_id=5).image
    assert not np.array_equal(base, augment_frame(image, [OBJECT], "noise", seed=2, task_id=TASK, frame_id=5).image)
    assert not np.array_equal(base, augment_frame(image, [OBJECT], "noise", seed=1, task_id=TASK, frame_id=6).image)
    assert frame_seed(1, TASK, 5, "noise") != frame_seed(1, TASK, 5, "blur")
    picks = [is_selected(99, TASK, frame, "blur", 0.5) for frame in range(1, 1001)]
    assert picks == [is_selected(99, TASK, frame, "blur", 0.5) for frame in range(1, 1001)]
    assert 430 < sum(picks) < 570
    assert all(is_selected(99, TASK, frame, "blur") for frame in range(1, 50))


def test_a_rebuild_in_another_process_writes_the_same_bytes():
    script = ("import hashlib, numpy as np, cv2\n"
              "from tests.test_dataset_library import frame_with_object, jpeg, OBJECT, TASK\n"
              "from media_service.datasets.augment_apply import augment_frame\n"
              "for aug in ('rotation', 'noise', 'crop', 'hue'):\n"
              "    out = augment_frame(frame_with_object(), [OBJECT], aug, seed=7, task_id=TASK, frame_id=9)\n"
              "    print(aug, hashlib.sha256(jpeg(out.image) + out.label_text.encode()).hexdigest())\n")
    here = {}
    for aug in ("rotation", "noise", "crop", "hue"):
        out = augment_frame(frame_with_object(), [OBJECT], aug, seed=7, task_id=TASK, frame_id=9)
        here[aug] = hashlib.sha256(jpeg(out.image) + out.label_text.encode()).hexdigest()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert dict(line.split() for line in done.stdout.split("\n") if line) == here


def test_settings_and_the_versions_augmentation_list():
    settings = AugmentationSettings.from_config(load_settings({
        "AUGMENTATION_AUG_MAP": "mirror_x: Fliplr", "AUGMENTATION_DEFAULT_RANGES": '{"rotation": 30}',
        "AUGMENTATION_DISABLED_AUGS": "noise, sharpen", "AUGMENTATION_KEEP_SIZE_CROP": "true",
        "AUGMENTATION_FRACTION": "0.5"}).augmentation)
    assert settings.aug_map["mirror_x"] == "HorizontalFlip" and settings.aug_map["flip_vertical"] == "VerticalFlip"
    assert settings.default_range("rotation") == (-30.0, 30.0) and settings.fraction == 0.5
    with pytest.raises(ValueError, match="swapped"):
        AugmentationSettings.from_config(load_settings({"AUGMENTATION_AUG_MAP": '{"flip_horizontal": "Flipud"}'})
                                         .augmentation)
    with pytest.raises(ValueError, match="unknown augmenter"):
        AugmentationSettings.from_config(aug_map={"blur": "MotionWobble"})
    # CONTRACT §2's shape: the platform's ids, switches by values[0], ranges from the UI's values.
    version_types = {"IMAGE_LEVEL": [
        {"id": "FLIP", "properties": [{"id": "FLIP_HORIZONTAL", "values": [True]},
                                      {"id": "FLIP_VERTICAL", "values": [False]},
                                      {"id": "MIRROR_X", "values": [True]}]},
        {"id": "ROTATE", "properties": [{"id": "CLOCKWISE", "values": [True]},
                                        {"id": "UPSIDE_DOWN", "values": ["true"]},
                                        {"id": "COUNTER_CLOCKWISE", "values": [False]}]},
        {"id": "ROTATION", "properties": [{"id": "ROTATION", "values": [-20, 20]}]},
        {"id": "BRIGHTNESS", "properties": [{"id": "BRIGHTNESS", "values": [20]}]},
        {"id": "NOISE", "properties": [{"id": "NOISE", "values": [5]}]},
        {"id": "CROP", "properties": [{"id": "CROP", "values": []}]},
    ], "BOUNDING_BOX_LEVEL": []}
    plan = requested_augmentations(version_types, settings)
    assert [(r.aug_type, r.augmenter, r.params) for r in plan.requests] == [
        ("HorizontalFlip", "HorizontalFlip", None), ("Fliplr", "HorizontalFlip", None),
        ("Rotate90", "Rotate90", None), ("Rotate180", "Rotate180", None), ("Rotate", "Rotate", (-20.0, 20.0)),
        ("Brightness", "Brightness", (-0.2, 0.2)), ("Crop", "Crop", (0.0, 0.2))]
    assert plan.disabled == ["NOISE"]  # in disabled_augs: left out, by the operator's choice
    # An id no augmenter has fails at once, naming it; so do other shapes (no guessing).
    with pytest.raises(AugmentationShapeError, match="SPARKLES, GLITTER"):
        requested_augmentations({"IMAGE_LEVEL": [{"id": "X", "properties": [
            {"id": "SPARKLES", "values": [True]}, {"id": "GLITTER", "values": [1]}]}]})
    for shape, where in ((["FLIP_HORIZONTAL"], "got list"), ({"IMAGE_LEVEL": [{"id": "FLIP"}]}, "no properties"),
                         ({"IMAGE_LEVEL": [{"properties": [{"name": "BLUR", "values": []}]}]}, "has no id"),
                         ({"IMAGE_LEVEL": [{"properties": [{"id": "BLUR", "value": 2}]}]}, "no values list"),
                         ({"IMAGE_LEVEL": [], "PIXEL_LEVEL": []}, "unexpected keys")):
        with pytest.raises(AugmentationShapeError, match=where):
            requested_augmentations(shape)
    with pytest.raises(AugmentationShapeError, match="'ROTATION'"):
        requested_augmentations({"IMAGE_LEVEL": [{"properties": [{"id": "ROTATION", "values": ["lots"]}]}]})
    assert requested_augmentations(None).requests == [] and requested_augmentations({}).requests == []
    with pytest.raises(ValueError, match="outside"):
        request_for("crop", params=0.8)


# -- exports -----------------------------------------------------------------------------------
NAMES = ["car", "car (state=parked)", "person"]
TASK_B = "64b7f0c2a1b2c3d4e5f6071b"


def encoded(seed: int, width=96, height=64) -> bytes:
    return jpeg(np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8))


def export_records() -> list[ExportRecord]:
    records = []
    for task, count in ((TASK, 5), (TASK_B, 4)):
        for frame in range(1, count + 1):
            split = (1, 1, 2, 3, None)[(frame - 1) % 5] if task == TASK else ("1", "VALIDATION", 3, 1)[frame - 1]
            boxes = [(10, 8, 42, 40, frame % 3), Box(50, 20, 90, 60, "person"), (120, 10, 140, 30, 0)]  # last: outside
            records.append(ExportRecord(task, frame, split, 96, 64, encoded(frame + len(task)), boxes,
                                        label_text=f"own label file {task} {frame}\n"))
    records.append(ExportRecord(TASK, 1, 1, 64, 96, encoded(99, 64, 96), [(8, 10, 40, 42, 2)],
                                augmentation="rotate_90"))
    return records


# per split: images (frames and the one augmentation), from the list above
EXPECTED = {"train": 2 + 1 + 2, "val": 1 + 1, "test": 1 + 1}


def test_yolo_export_data_yaml_names_folders_with_the_right_files(tmp_path):
    summary = write_export(export_records(), NAMES, tmp_path / "out", zip_path=tmp_path / "out.zip")
    assert summary.images == EXPECTED and summary.skipped == 1 and summary.dropped_boxes == 8
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["path"] == "" and data["names"] == {0: "car", 1: "car (state=parked)", 2: "person"}
    assert data["nc"] == 3
    for split, key in (("train", "train"), ("val", "val"), ("test", "test")):
        images = tmp_path / "out" / data[key]
        labels = tmp_path / "out" / data[key].replace("images", "labels", 1)
        assert images.is_dir() and labels.is_dir()
        assert len(list(images.glob("*.jpg"))) == EXPECTED[split] == len(list(labels.glob("*.txt")))
        assert {p.stem for p in images.iterdir()} == {p.stem for p in labels.iterdir()}
    label = (tmp_path / "out" / "labels" / "train" / f"{TASK}_000001.txt").read_text()
    # frame 1: class 1, x 10..42, y 8..40 of 96x64; person x 50..90, y 20..60; the third box lies outside
    assert label == ("1 0.270833 0.375000 0.333333 0.500000\n"
                     "2 0.729167 0.625000 0.416667 0.625000\n")
    rotated = (tmp_path / "out" / "labels" / "train" / f"{TASK}_000001_rotate_90.txt").read_text()
    assert rotated == "2 0.375000 0.270833 0.500000 0.333333\n"
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        names = set(archive.namelist())
        assert "data.yaml" in names and "images/test/" in names
        assert sum(n.startswith("images/") and n.endswith(".jpg") for n in names) == sum(EXPECTED.values())
        assert archive.testzip() is None


def test_coco_files_load_with_pycocotools_and_annotations_round_trip(tmp_path, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    records = export_records()
    summary = write_export(records, NAMES, tmp_path / "out", formats=("coco",))
    assert not (tmp_path / "out" / "data.yaml").exists() and not (tmp_path / "out" / "labels").exists()
    loaded = {split: COCO(str(path)) for split, path in summary.coco_files.items()}
    assert {split: len(coco.getImgIds()) for split, coco in loaded.items()} == EXPECTED
    checked = 0
    for record in records:
        split = split_name(record.split)
        if split is None:
            continue
        coco = loaded[split]
        image_id = coco_image_id(record.task_id, record.frame_id, record.augmentation)
        image = coco.loadImgs(image_id)[0]
        assert (image["width"], image["height"]) == (record.width, record.height)
        assert (tmp_path / "out" / "images" / split / image["file_name"]).read_bytes() == record.image
        annotations = {a["id"]: a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))}
        for position, raw in enumerate(record.boxes):
            box = raw if isinstance(raw, Box) else Box(*raw)
            annotation_id = coco_annotation_id(record.task_id, record.frame_id, position, record.augmentation)
            if box.x1 >= record.width:
                assert annotation_id not in annotations
                continue
            annotation = annotations[annotation_id]
            assert annotation["bbox"] == [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1]
            assert annotation["area"] == (box.x2 - box.x1) * (box.y2 - box.y1) and annotation["iscrowd"] == 0
            cls = NAMES.index(box.cls) if isinstance(box.cls, str) else box.cls
            assert coco.loadCats(annotation["category_id"])[0]["name"] == NAMES[cls]
            checked += 1
    assert checked == 8 * 2 + 1   # two boxes in each frame with a split, one in the augmented one
    train = loaded["train"]
    detections = train.loadRes([{**a, "score": 1.0} for a in train.dataset["annotations"]])
    evaluation = COCOeval(train, detections, "bbox")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    capsys.readouterr()
    assert evaluation.stats[0] == pytest.approx(1.0)    # the ground truth found itself: AP 1.0


def test_exports_are_byte_identical_whatever_the_order(tmp_path):
    records = export_records()
    first = write_export(records, NAMES, tmp_path / "a", zip_path=tmp_path / "a.zip")
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    second = write_export(iter(shuffled), NAMES, tmp_path / "b", zip_path=tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    for split in first.coco_files:
        assert first.coco_files[split].read_bytes() == second.coco_files[split].read_bytes()
    ids = [a["id"] for p in first.coco_files.values() for a in json.loads(p.read_text())["annotations"]]
    assert len(ids) == len(set(ids)) and max(ids) < 2**53
    assert zip_folder(tmp_path / "a", tmp_path / "c.zip").read_bytes() == (tmp_path / "a.zip").read_bytes()
    with pytest.raises(ValueError, match="not empty"):
        write_export(records, NAMES, tmp_path / "a")
    with pytest.raises(ValueError, match="twice"):
        write_export(records + records[:1], NAMES, tmp_path / "d")
    with pytest.raises(ValueError, match="outside"):
        write_export([ExportRecord(TASK, 1, 1, 96, 64, b"x", [(0, 0, 5, 5, 3)])], NAMES, tmp_path / "e")


def test_samples_zip_holds_a_few_frames_per_split_with_their_label_files(tmp_path):
    records = export_records()
    summary = write_samples_zip(records, NAMES, tmp_path / "samples.zip", per_split=2)
    assert summary.images == {"train": 2, "val": 2, "test": 2}
    with zipfile.ZipFile(tmp_path / "samples.zip") as archive:
        names = archive.namelist()
        assert yaml.safe_load(archive.read("data.yaml"))["names"][2] == "person"
        for split in ("train", "val", "test"):
            images = sorted(n for n in names if n.startswith(f"images/{split}/") and n.endswith(".jpg"))
            labels = sorted(n for n in names if n.startswith(f"labels/{split}/") and n.endswith(".txt"))
            assert len(images) == 2 and [n.split("/")[-1][:-4] for n in images] == \
                [n.split("/")[-1][:-4] for n in labels]
            for label in labels:
                stem = label.split("/")[-1][:-4]
                record = next(r for r in records if r.stem == stem)
                expected = record.label_text or "".join(
                    Box(*b).clipped(record.width, record.height).yolo_line(record.width, record.height) + "\n"
                    for b in record.boxes)
                assert archive.read(label).decode() == expected          # the version's own files
    assert [r.stem for r in choose_samples(reversed(records), 2)] == [r.stem for r in choose_samples(records, 2)]
    assert not list(tmp_path.glob(".samples-*"))
    again = write_samples_zip(reversed(records), NAMES, tmp_path / "again.zip", per_split=2)
    assert again.images == summary.images
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "samples.zip").read_bytes()


def test_split_names():
    assert [split_name(v) for v in (1, 2, 3, "1", "TRAINING", "validation", "test", None)] == \
        ["train", "val", "test", "train", "train", "val", "test", None]
    with pytest.raises(ValueError):
        split_name(4)


def test_dataset_jpegs_keep_the_colours_of_the_rgb_frame():
    """Frames reach the writer as RGB and are encoded without a BGR copy: red stays red, in the
    picture and in its thumbnail, as OpenCV (BGR) and Pillow (RGB) read them back."""
    from PIL import Image

    from media_service.datasets.frame_writer import _jpeg, _thumbnail

    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[:, :160] = (220, 30, 30)    # red half
    rgb[:, 160:] = (30, 30, 220)    # blue half
    for encoded, width in ((_jpeg(rgb, 90), 320), (_jpeg(_thumbnail(rgb, 100), 90), 100)):
        bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        assert bgr.shape[1] == width
        assert np.abs(bgr[:, : width // 4].astype(int).mean(axis=(0, 1)) - (30, 30, 220)).max() < 6   # BGR red
        assert np.abs(bgr[:, -width // 4:].astype(int).mean(axis=(0, 1)) - (220, 30, 30)).max() < 6  # BGR blue
        with Image.open(io.BytesIO(encoded)) as image:
            assert image.mode == "RGB" and image.getpixel((5, 5))[0] > 200 and image.getpixel((5, 5))[2] < 60


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """Zip a folder reproducibly, as `write_export` zips what it writes (the same files, the same bytes)."""
    skip = {zip_path.resolve(), zip_path.resolve().with_name(zip_path.name + ".part")}
    folders, entries = set(), {}
    for path in folder.rglob("*"):
        if path.resolve() in skip:
            continue
        name = path.relative_to(folder).as_posix()
        if path.is_dir():
            folders.add(name)
        else:
            entries[name] = path
    return _write_zip(folders, entries, zip_path)
