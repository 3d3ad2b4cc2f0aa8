"""The `privacy` job kind: blur every face in one video from the privacy input directory."""
from __future__ import annotations

import threading
from pathlib import Path

from media_service.contract import PRIVACY_KIND, PrivacyJobParams
from media_service.detectors.centerface import CenterFace
from media_service.detectors.rekognition import Rekognition, client_for
from media_service.errors import PathRefused
from media_service.mongo import Job, MongoManager
from media_service.paths import ConfinedDir
from media_service.privacy.pipeline import BlurSettings, PrivacyPipeline
from media_service.worker_pool import JobContext


def make_detector(settings):
    if settings.privacy.detector == "rekognition":
        return Rekognition(client_for(settings, settings.privacy.rekognition_endpoint_url))
    return CenterFace(settings.privacy.threshold, settings.privacy.detector_threads)


def blur_settings(privacy, content) -> BlurSettings:
    """The pipeline's settings from the [Privacy] section (the encoder's preset is [Content]'s)."""
    return BlurSettings(detect_every=privacy.detect_every, detect_width=privacy.detect_width,
                        hold_frames=privacy.hold_frames, pad=privacy.pad, mode=privacy.blur_mode,
                        cells=privacy.blur_cells, fail_closed=privacy.fail_closed, preset=content.x264_preset,
                        crf=privacy.x264_crf, verify_threshold=privacy.verify_threshold,
                        max_blacked_out_percent=privacy.max_blacked_out_percent)


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
        return PrivacyPipeline(self._detector, blur_settings(self.settings.privacy, self.settings.content),
                               self.settings.content.max_width, self.settings.content.max_height)

    def label(self, job: Job) -> str:
        return f"video={job.key}"

    def run(self, ctx: JobContext) -> None:
        params = PrivacyJobParams.from_doc(ctx.job.params)
        input_root, output_root = self.settings.privacy.folders()
        ctx.set_stage("blurring")

        def progress(fraction: float) -> None:  # after the first frame, then about once a second
            # No resume point (a resumed run blurs the video again from its start): an empty checkpoint.
            ctx.checkpoint({}, "blurring", round(fraction * 100, 1))

        counts = self._pipeline().run(Path(params.source), params.outputs, progress=progress, check=ctx.check,
                                      input_root=input_root, output_root=output_root,
                                      before_publish=ctx.stop_if_cancel_requested)
        ctx.report(counts)

    def _remove(self, job: Job, finished_too: bool = False) -> None:
        outputs = PrivacyJobParams.from_doc(job.params).outputs
        names = [outputs.temp.name, outputs.log_temp.name]
        if finished_too:
            names += [outputs.final.name, outputs.log_final.name]
        try:
            with ConfinedDir(self.settings.privacy.folders()[1], outputs.final.parent, create=False) as folder:
                for name in names:
                    folder.unlink(name)
        except PathRefused:  # the folder is gone or was swapped: nothing of ours to remove there
            pass

    def on_failed(self, job: Job, error: Exception, final: bool) -> None:
        self._remove(job)

    def on_cancelled(self, job: Job) -> None:
        # A cancel that came after the output was renamed (the job's last step) removes it too.
        self._remove(job, finished_too=True)
