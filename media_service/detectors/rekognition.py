"""AWS Rekognition, through boto3: faces (DetectFaces), objects (DetectLabels) and both together
for auto-annotation.

Throttling and transient failures are retried by botocore's own retry mode (`standard`, or
`adaptive` which also paces the calls); what still fails after that is reported as the service
being unavailable, so the job is tried again later rather than its frames being blacked out.
Errors about one image are frame failures; errors about credentials or permissions are a
configuration problem that no retry fixes.

Each back end counts its billable calls in `calls` (requests that returned an answer; throttled or
failed attempts are not billed), and sends a batch's frames `workers` at a time.
"""
from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import cv2
import numpy as np

from media_service.detectors import BatchDetector, Detection
from media_service.detectors.labels import FACE
from media_service.errors import DetectorError, DetectorMisconfigured, DetectorUnavailable

T = TypeVar("T")
R = TypeVar("R")

# Error codes of the Rekognition API, by what they mean for a job.
_FRAME_ERRORS = {"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"}
_CONFIG_ERRORS = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                  "ExpiredTokenException", "InvalidClientTokenId", "MissingAuthenticationToken"}
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # DetectFaces' limit for image bytes


def make_client(region: str, endpoint_url: str = "", access_key_id: str = "", secret_access_key: str = "",
                retry_mode: str = "standard", max_attempts: int = 5, timeout: float = 30.0,
                max_pool_connections: int = 10):
    """A Rekognition client on the standard AWS credential chain (explicit keys when given).
    `max_pool_connections` should be at least the `workers` of the back ends sharing the client."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": retry_mode, "total_max_attempts": max_attempts}, connect_timeout=timeout,
                    read_timeout=timeout, max_pool_connections=max_pool_connections)
    return boto3.client("rekognition", region_name=region, endpoint_url=endpoint_url or None,
                        aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
                        config=config)


def client_for(settings, endpoint_url: str, workers: int = 1):
    """The Rekognition client the settings describe ([S3] region and keys, [Rekognition] retries) at
    `endpoint_url` ("": AWS's own), with a connection for each of `workers` threads (at least 10)."""
    return make_client(settings.s3.region, endpoint_url, settings.s3.access_key_id, settings.s3.secret_access_key,
                       settings.rekognition.retry_mode, settings.rekognition.max_attempts,
                       max_pool_connections=max(10, workers))


def classify(exc: Exception, action: str) -> Exception:
    """The detector error for a boto3 failure (after botocore's own retries)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return DetectorMisconfigured(f"Rekognition {action}: no AWS credentials found")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _FRAME_ERRORS:
            return DetectorError(f"Rekognition {action} refused the frame: {code}")
        if code in _CONFIG_ERRORS:
            return DetectorMisconfigured(f"Rekognition {action}: {code} (check the credentials and permissions)")
        return DetectorUnavailable(f"Rekognition {action} failed after retries: {code or exc}")
    if isinstance(exc, BotoCoreError):  # connection refused, timeouts, DNS: the service is unreachable
        return DetectorUnavailable(f"Rekognition {action} is unreachable: {exc}")
    return DetectorError(f"Rekognition {action} failed: {exc}")


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    """The frame as a JPEG within Rekognition's byte limit (quality lowered until it fits)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for quality in (90, 75, 60, 45):
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(jpeg) <= MAX_IMAGE_BYTES:
            return jpeg.tobytes()
    raise DetectorError("the frame does not fit Rekognition's 5 MB limit as a JPEG")


def ratio_box(box: dict, width: int, height: int) -> tuple[float, float, float, float]:
    """Rekognition's BoundingBox (ratios of the image) in pixels, clipped to the image."""
    x1, y1 = box["Left"] * width, box["Top"] * height
    return (max(0.0, x1), max(0.0, y1), min(float(width), x1 + box["Width"] * width),
            min(float(height), y1 + box["Height"] * height))


def in_pool(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`function` over `items`, at most `workers` at a time, results in order. A failure is raised
    (the first in item order) after the calls under way end; calls not yet started are cancelled."""
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="rekognition")
    try:
        futures = [pool.submit(function, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Counted(BatchDetector):
    """Counts billable calls (thread-safe) and runs batches on a small thread pool."""

    def __init__(self, client, workers: int):
        self.client = client
        self.workers = max(1, workers)
        self.calls = 0
        self._calls_lock = threading.Lock()

    def _call(self, action: str, **request) -> dict:
        method = {"DetectFaces": "detect_faces", "DetectLabels": "detect_labels"}[action]
        try:
            answer = getattr(self.client, method)(**request)
        except Exception as exc:
            raise classify(exc, action) from exc
        with self._calls_lock:
            self.calls += 1
        return answer

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        return in_pool(lambda frame: self.detect(frame, threshold), list(frames), self.workers)


class Rekognition(_Counted):
    """AWS Rekognition DetectFaces (one request per detected frame), label "face".

    `min_confidence` is in Rekognition's percent (0..100); a call's `threshold` is 0..1.
    `workers`: requests under way at once in `detect_batch`.
    """

    name = "rekognition"
    version = "DetectFaces"
    labels = (FACE,)

    def __init__(self, client, min_confidence: float = 50.0, workers: int = 4):
        super().__init__(client, workers)
        self.min_confidence = min_confidence

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        height, width = rgb.shape[:2]
        return self.detect_jpeg(jpeg_bytes(rgb), width, height, threshold)

    def detect_jpeg(self, jpeg: bytes, width: int, height: int, threshold: float | None = None) -> list[Detection]:
        """Faces in an already encoded frame of `width` x `height` pixels."""
        minimum = self.min_confidence if threshold is None else threshold * 100
        answer = self._call("DetectFaces", Image={"Bytes": jpeg}, Attributes=["DEFAULT"])
        faces = []
        for detail in answer.get("FaceDetails", []):
            confidence = float(detail.get("Confidence", 0.0))
            box = detail.get("BoundingBox") or {}
            if confidence < minimum or not box:
                continue
            faces.append(Detection(*ratio_box(box, width, height), confidence / 100.0))
        return faces


RekognitionFaces = Rekognition


class RekognitionLabels(_Counted):
    """AWS Rekognition DetectLabels: each label instance with a BoundingBox becomes a box labelled
    with the label's name ("Person", "Car", ...); labels without instances ("Outdoors") give none.

    `min_confidence` (0..100) is sent as MinConfidence and also applied to each instance's own
    confidence; `max_labels` is sent as MaxLabels. Scores come back 0..1. `labels` is empty: the
    vocabulary is open. `version` names the label model the service last reported.
    """

    name = "rekognition_labels"
    labels: tuple[str, ...] = ()

    def __init__(self, client, min_confidence: float = 50.0, max_labels: int = 100, workers: int = 4):
        super().__init__(client, workers)
        self.min_confidence = min_confidence
        self.max_labels = max_labels
        self.model_version = ""

    @property
    def version(self) -> str:
        return f"DetectLabels {self.model_version or '(model version not seen yet)'}"

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        height, width = rgb.shape[:2]
        return self.detect_jpeg(jpeg_bytes(rgb), width, height, threshold)

    def detect_jpeg(self, jpeg: bytes, width: int, height: int, threshold: float | None = None) -> list[Detection]:
        """Boxed label instances in an already encoded frame of `width` x `height` pixels."""
        minimum = float(self.min_confidence if threshold is None else threshold * 100)
        answer = self._call("DetectLabels", Image={"Bytes": jpeg}, MaxLabels=int(self.max_labels),
                            MinConfidence=minimum)
        self.model_version = answer.get("LabelModelVersion") or self.model_version
        found = []
        for label in answer.get("Labels", []):
            name = label.get("Name", "")
            for instance in label.get("Instances") or ():
                box = instance.get("BoundingBox") or {}
                confidence = float(instance.get("Confidence", label.get("Confidence", 0.0)))
                if not name or not box or confidence < minimum:
                    continue
                x1, y1, x2, y2 = ratio_box(box, width, height)
                if x2 > x1 and y2 > y1:
                    found.append(Detection(x1, y1, x2, y2, confidence / 100.0, name))
        return found


class RekognitionAnnotator(BatchDetector):
    """The Rekognition back end for auto-annotation: DetectLabels for objects plus DetectFaces for
    faces (label "face"), two billable calls per frame sharing one JPEG. DetectLabels' own "Face"
    boxes are dropped (DetectFaces finds faces). `calls` is the sum of both; `workers` requests
    are under way at once in `detect_batch`. `without_faces` leaves DetectFaces out (one call a frame).
    """

    name = "rekognition_annotator"
    labels: tuple[str, ...] = ()

    def __init__(self, client, min_confidence: float = 50.0, max_labels: int = 100,
                 face_min_confidence: float = 50.0, workers: int = 4):
        self.objects = RekognitionLabels(client, min_confidence, max_labels, workers=1)
        self.faces: Rekognition | None = Rekognition(client, face_min_confidence, workers=1)
        self.workers = max(1, workers)

    def without_faces(self) -> "RekognitionAnnotator":
        """The same back end without DetectFaces (for projects without a face label)."""
        view = copy.copy(self)
        view.faces = None
        return view

    @property
    def version(self) -> str:
        return self.objects.version + (f" + {self.faces.version}" if self.faces is not None else "")

    @property
    def calls(self) -> int:
        return self.objects.calls + (self.faces.calls if self.faces is not None else 0)

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        return self.detect_batch([rgb], threshold)[0]

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        encoded = [(jpeg_bytes(frame), frame.shape[1], frame.shape[0]) for frame in frames]
        back_ends = (self.objects,) if self.faces is None else (self.objects, self.faces)
        jobs = [(back_end, frame) for frame in encoded for back_end in back_ends]
        found = in_pool(lambda job: job[0].detect_jpeg(*job[1], threshold), jobs, self.workers)
        results = []
        for start in range(0, len(found), len(back_ends)):
            objects, *faces = found[start:start + len(back_ends)]
            results.append([box for box in objects if box.label.lower() != FACE] + (faces[0] if faces else []))
        return results
