"""A local HTTP server speaking AWS Rekognition's JSON protocol (AWS cannot be reached from here,
and moto's Rekognition is canned and lacks DetectFaces).

It records every request (X-Amz-Target, Authorization, X-Amz-Date, Host, the JSON body and the raw
bytes) and answers:
- DetectLabels with `labels_answer` (canned JSON);
- DetectFaces with `faces_answer`, or, when a `face_detector` is given, with what that detector
  finds on the JPEG it was sent (as the privacy tests use it);
- HTTP 400 ThrottlingException for the next `throttle` requests (botocore retries those);
- `fail_with` (an error code such as "AccessDeniedException") for every request while it is set.
With `delay` (seconds) each answer waits, and `max_in_flight` tells how many requests were ever
being answered at once.

`signature_valid(request, access_key, secret_key)` recomputes a request's AWS Signature V4 by hand
(independently of botocore) so a test can prove the client signed with its keys.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

DEFAULT_LABELS_ANSWER = {"Labels": [], "LabelModelVersion": "3.0"}
DEFAULT_FACES_ANSWER = {"FaceDetails": []}


class RekognitionStandIn:
    def __init__(self, labels_answer: dict | None = None, faces_answer: dict | None = None, face_detector=None):
        self.labels_answer = labels_answer if labels_answer is not None else DEFAULT_LABELS_ANSWER
        self.faces_answer = faces_answer if faces_answer is not None else DEFAULT_FACES_ANSWER
        self.face_detector = face_detector
        self.throttle = 0              # answer this many next requests with ThrottlingException
        self.fail_with: str | None = None
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stand_in._lock:
                    stand_in.in_flight += 1
                    stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                try:
                    if stand_in.delay:
                        time.sleep(stand_in.delay)
                    status, answer = stand_in._answer(self, raw)
                finally:
                    with stand_in._lock:
                        stand_in.in_flight -= 1
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # -- what it answers ---------------------------------------------------------------------------
    def _answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> tuple[int, dict]:
        target = handler.headers.get("X-Amz-Target", "")
        record = {"target": target, "auth": handler.headers.get("Authorization", ""),
                  "amz_date": handler.headers.get("X-Amz-Date", ""), "headers": dict(handler.headers.items()),
                  "method": handler.command, "path": handler.path, "raw": raw, "body": json.loads(raw or b"{}")}
        with self._lock:
            self.requests.append(record)
            if self.throttle > 0:
                self.throttle -= 1
                return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
            if self.fail_with:
                return 400, {"__type": self.fail_with, "message": f"{self.fail_with} from the stand-in"}
        action = target.rsplit(".", 1)[-1]
        if action == "DetectLabels":
            return 200, self.labels_answer
        if action == "DetectFaces":
            if self.face_detector is None:
                return 200, self.faces_answer
            return 200, {"FaceDetails": self._faces_found(record["body"])}
        return 400, {"__type": "UnknownOperationException", "message": f"no {action} here"}

    def _faces_found(self, body: dict) -> list[dict]:
        image = decode_image(body)
        height, width = image.shape[:2]
        return [{"BoundingBox": {"Left": f.x1 / width, "Top": f.y1 / height,
                                 "Width": (f.x2 - f.x1) / width, "Height": (f.y2 - f.y1) / height},
                 "Confidence": f.score * 100}
                for f in self.face_detector.detect(np.ascontiguousarray(image[:, :, ::-1]))]

    # -- helpers for tests ---------------------------------------------------------------------------
    def targets(self) -> list[str]:
        with self._lock:
            return [r["target"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "RekognitionStandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_image(body: dict) -> np.ndarray:
    """The BGR image a request's JSON body carries (Image.Bytes, base64 on the wire)."""
    data = base64.b64decode(body["Image"]["Bytes"])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the request's Image.Bytes is not a decodable image"
    return image


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature_valid(request: dict, access_key: str, secret_key: str) -> bool:
    """Recompute the request's SigV4 signature (AWS's documented algorithm, written out here rather
    than borrowed from botocore) and compare it with the one in its Authorization header."""
    auth = request["auth"]
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key_id, date, region, service, terminal = fields["Credential"].split("/")
    if key_id != access_key or terminal != "aws4_request":
        return False
    signed = fields["SignedHeaders"].split(";")
    headers = {name.lower(): value for name, value in request["headers"].items()}
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    path, _, query = request["path"].partition("?")
    canonical_request = "\n".join([request["method"], path or "/", query, canonical_headers, ";".join(signed),
                                   hashlib.sha256(request["raw"]).hexdigest()])
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", request["amz_date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["Signature"])
