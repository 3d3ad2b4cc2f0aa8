"""The `privacy` job kind: blur every face in one video from the privacy input directory."""
from __future__ import annotations

import threading
from pathlib import Path

import video_processor as vp
from media_service.contract import PRIVACY_KIND, PrivacyJobParams
from media_service.detectors import DetectorError
from media_service.detectors.centerface import CenterFace
from media_service.detectors.rekognition import Rekognition
from media_service.jobs import JobContext, PermanentError
from media_service.privacy.pipeline import BlurSettings, PrivacyPipeline
from mongo_manager import MongoManager


def make_detector(settings):
    if settings.privacy_detector == "rekognition":
        import boto3

        client = boto3.client("rekognition", region_name=settings.s3_region,
                              endpoint_url=settings.privacy_rekognition_endpoint_url or None,
                              aws_access_key_id=settings.s3_access_key_id or None,
                              aws_secret_access_key=settings.s3_secret_access_key or None)
        return Rekognition(client)
    return CenterFace(settings.privacy_threshold, settings.privacy_detector_threads)


def blur_settings(settings) -> BlurSettings:
    return BlurSettings(settings.privacy_detect_every, settings.privacy_detect_width, settings.privacy_hold_frames,
                        settings.privacy_pad, settings.privacy_blur_mode, settings.privacy_blur_cells,
                        settings.privacy_fail_closed, settings.x264_preset, settings.privacy_x264_crf)


class PrivacyJobHandler:
    kind = PRIVACY_KIND

    def __init__(self, mongo: MongoManager, settings):
        self.mongo = mongo
        self.settings = settings
        self._detector = None
        self._lock = threading.Lock()

    def _pipeline(self) -> PrivacyPipeline:
        with self._lock:  # the model loads once, on first use; sessions are safe to share
            if self._detector is None:
                self._detector = make_detector(self.settings)
        return PrivacyPipeline(self._detector, blur_settings(self.settings),
                               self.settings.max_width, self.settings.max_height)

    def label(self, job: dict) -> str:
        return f"video={job['key']}"

    def run(self, ctx: JobContext) -> None:
        params = PrivacyJobParams.from_doc(ctx.job["params"])
        source = Path(params.source)
        if not source.is_file():
            raise vp.MediaError("source_missing", f"{params.filename} no longer exists")
        ctx.set_stage("blurring")

        def progress(fraction: float) -> None:  # the pipeline calls this about once a second
            ctx.checkpoint({}, "blurring", round(fraction * 100, 1))

        self._pipeline().run(source, params.outputs, progress=progress, check=ctx.check)

    def permanent_error(self, exc: Exception) -> PermanentError | None:
        if isinstance(exc, vp.MediaError):
            return PermanentError(exc.code, str(exc))
        if isinstance(exc, DetectorError):
            return PermanentError("detection_failed", str(exc))
        return None

    def _remove_partial(self, job: dict) -> None:
        PrivacyJobParams.from_doc(job["params"]).outputs.remove_partial()

    def on_failed(self, job: dict, error: Exception, final: bool) -> None:
        self._remove_partial(job)

    def on_cancelled(self, job: dict) -> None:
        self._remove_partial(job)
