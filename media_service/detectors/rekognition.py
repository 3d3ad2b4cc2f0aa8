"""AWS Rekognition as a face detector (DetectFaces), through boto3."""
from __future__ import annotations

import cv2
import numpy as np

from media_service.detectors import Detection, DetectorError


class Rekognition:
    """AWS Rekognition DetectFaces (one request per detected frame; JPEG under the 5 MB limit)."""

    name = "rekognition"

    def __init__(self, client, min_confidence: float = 50.0):
        self.client = client
        self.min_confidence = min_confidence

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise DetectorError("could not encode the frame for Rekognition")
        try:
            answer = self.client.detect_faces(Image={"Bytes": jpeg.tobytes()}, Attributes=["DEFAULT"])
        except Exception as exc:
            raise DetectorError(f"Rekognition DetectFaces failed: {exc}") from exc
        faces = []
        for detail in answer.get("FaceDetails", []):
            confidence = float(detail.get("Confidence", 0.0))
            box = detail.get("BoundingBox") or {}
            if confidence < self.min_confidence or not box:
                continue
            x1, y1 = box["Left"] * width, box["Top"] * height
            faces.append(Detection(max(0.0, x1), max(0.0, y1), min(float(width), x1 + box["Width"] * width),
                              min(float(height), y1 + box["Height"] * height), confidence / 100.0))
        return faces
