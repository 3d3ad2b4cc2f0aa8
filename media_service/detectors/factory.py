"""The configured back end for auto-annotation, loaded once per process and shared by its jobs.

`problem(settings)` tells, cheaply and without loading a model, why the configured back end could
not work (missing model files, no AWS credentials): a request can then be refused at once.
"""
from __future__ import annotations

import threading
from pathlib import Path

_loaded: dict[tuple, object] = {}
_lock = threading.Lock()


def _key(settings) -> tuple:
    """Everything that makes one back end differ from another."""
    kind = settings.inference.type
    if kind == "darknet":
        return (kind, settings.inference.config_file, settings.inference.weight_file, settings.inference.labels_file,
                settings.inference.objectness, settings.inference.nms_threshold, settings.inference.batch_size,
                settings.inference.net_width, settings.inference.net_height)
    if kind == "rekognition":
        return (kind, settings.s3.region, rekognition_endpoint(settings), settings.rekognition.min_confidence,
                settings.rekognition.max_labels, settings.rekognition.workers, settings.rekognition.retry_mode,
                settings.rekognition.max_attempts)
    return (kind, settings.inference.object_model, settings.inference.object_threshold,
            settings.inference.face_threshold, settings.inference.batch_size)


def rekognition_endpoint(settings) -> str:
    return settings.rekognition.endpoint_url or settings.privacy.rekognition_endpoint_url


def annotation_detector(settings):
    """The back end `[Inference] type` names. Models load on first use and are then shared by every
    job of the process; a Rekognition back end is made per run (on a shared client), so that its
    count of billable calls is that run's."""
    key = _key(settings)
    with _lock:
        if key not in _loaded:
            _loaded[key] = _build(settings)
        loaded = _loaded[key]
    if settings.inference.type == "rekognition":
        from media_service.detectors.rekognition import RekognitionAnnotator
        return RekognitionAnnotator(loaded, settings.rekognition.min_confidence, settings.rekognition.max_labels,
                                    settings.rekognition.min_confidence, settings.rekognition.workers)
    return loaded


def _build(settings):
    kind = settings.inference.type
    if kind == "darknet":
        from media_service.detectors.darknet import Darknet
        return Darknet(settings.inference.config_file, settings.inference.weight_file, settings.inference.labels_file,
                       settings.inference.objectness, settings.inference.nms_threshold, settings.inference.batch_size,
                       net_size=(settings.inference.net_width, settings.inference.net_height))
    if kind == "rekognition":  # the client: thread-safe, reused
        from media_service.detectors.rekognition import client_for
        return client_for(settings, rekognition_endpoint(settings), settings.rekognition.workers)
    from media_service.detectors.centerface import CenterFace
    from media_service.detectors.local import LocalDetector
    # The models on one onnxruntime thread each: the content pipeline detects in a thread beside
    # the encoder, and a second onnxruntime thread mostly spins (measured on 2 cores, 640x480
    # frames: CenterFace 35-37 CPU ms a frame on one thread, 60-79 on two, same boxes).
    return LocalDetector(_object_model(settings), CenterFace(threshold=settings.inference.face_threshold, threads=1),
                         settings.inference.object_threshold, settings.inference.face_threshold,
                         face_search=settings.inference.face_search)


def _object_model(settings):
    if settings.inference.object_model == "ssd_mobilenet_v2":
        from media_service.detectors.ssd_mobilenet import SsdMobileNet
        return SsdMobileNet(settings.inference.object_threshold, batch_size=settings.inference.batch_size)
    from media_service.detectors.yolox import YoloxNano
    return YoloxNano(settings.inference.object_threshold, threads=1)


def problem(settings) -> str | None:
    """Why the configured back end cannot work, or None. Cheap: files and credentials only."""
    kind = settings.inference.type
    try:
        if kind == "darknet":
            for name, value in (("config_file", settings.inference.config_file),
                                ("weight_file", settings.inference.weight_file),
                                ("labels_file", settings.inference.labels_file)):
                if not value:
                    return f"[Inference] {name} is not set (type = darknet)"
                if not Path(value).is_file():
                    return f"[Inference] {name} = {Path(value).name}: no such file"
        elif kind == "rekognition":
            import boto3
            if not (settings.s3.access_key_id or boto3.Session().get_credentials()):
                return "AWS Rekognition: no AWS credentials (the standard AWS chain found none, and [S3] has none)"
        else:
            from media_service.detectors.centerface import centerface_model_path
            centerface_model_path()
            if settings.inference.object_model == "ssd_mobilenet_v2":
                from media_service.detectors.ssd_mobilenet import ssd_model_files
                ssd_model_files()
            else:
                from media_service.detectors.yolox import MODEL_PATH
                if not MODEL_PATH.is_file():
                    return f"YOLOX-Nano: the model file {MODEL_PATH} is missing (reinstall the package)"
    except Exception as exc:  # any reason at all is reported the same way: a clear refusal
        return str(exc)
    return None
