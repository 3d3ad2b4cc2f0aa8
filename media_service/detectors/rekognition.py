"""AWS Rekognition as a face detector (DetectFaces), through boto3.

Throttling and transient failures are retried by botocore's own retry mode (`standard`, or
`adaptive` which also paces the calls); what still fails after that is reported as the service
being unavailable, so the job is tried again later rather than its frames being blacked out.
Errors about one image are frame failures; errors about credentials or permissions are a
configuration problem that no retry fixes.
"""
from __future__ import annotations

import cv2
import numpy as np

from media_service.detectors import Detection, DetectorError, DetectorMisconfigured, DetectorUnavailable

# Error codes of the Rekognition API, by what they mean for a job.
_FRAME_ERRORS = {"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"}
_CONFIG_ERRORS = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                  "ExpiredTokenException", "InvalidClientTokenId", "MissingAuthenticationToken"}
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # DetectFaces' limit for image bytes


def make_client(region: str, endpoint_url: str = "", access_key_id: str = "", secret_access_key: str = "",
                retry_mode: str = "standard", max_attempts: int = 5, timeout: float = 30.0):
    """A Rekognition client on the standard AWS credential chain (explicit keys when given)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": retry_mode, "max_attempts": max_attempts}, connect_timeout=timeout,
                    read_timeout=timeout)
    return boto3.client("rekognition", region_name=region, endpoint_url=endpoint_url or None,
                        aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
                        config=config)


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


class Rekognition:
    """AWS Rekognition DetectFaces (one request per detected frame)."""

    name = "rekognition"

    def __init__(self, client, min_confidence: float = 50.0):
        self.client = client
        self.min_confidence = min_confidence

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        minimum = self.min_confidence if threshold is None else threshold * 100
        height, width = rgb.shape[:2]
        try:
            answer = self.client.detect_faces(Image={"Bytes": jpeg_bytes(rgb)}, Attributes=["DEFAULT"])
        except DetectorError:
            raise
        except Exception as exc:
            raise classify(exc, "DetectFaces") from exc
        faces = []
        for detail in answer.get("FaceDetails", []):
            confidence = float(detail.get("Confidence", 0.0))
            box = detail.get("BoundingBox") or {}
            if confidence < minimum or not box:
                continue
            faces.append(Detection(*ratio_box(box, width, height), confidence / 100.0))
        return faces
