"""One privacy job: a video in, the same video with every face hidden out.

One streaming pass: decode → detect every k-th frame on a downscaled upright copy → track →
hide the regions on the yuv420p planes → encode H.264 with the source's timestamps, while the
audio packets are copied (or re-encoded to AAC when the container cannot hold them). The output
and its JSON region log are written under temporary names and renamed only when complete; a
restarted job starts again from the first frame.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import video_processor as vp
from media_service.contract import PrivacyOutputs
from media_service.detectors import Detection, DetectorError
from media_service.privacy import blur as face_blur
from media_service.privacy.tracking import FaceTracker, Region

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BlurSettings:
    detect_every: int
    detect_width: int
    hold_frames: int
    pad: float
    mode: str
    cells: int
    fail_closed: str      # blur_frame | fail_job
    preset: str
    crf: int


def upright_boxes_to_coded(faces: list[Detection], rotation: int, coded_w: int, coded_h: int) -> list[Detection]:
    """Boxes found on the upright (displayed) picture, moved back into the coded picture."""
    out = []
    for f in faces:
        if rotation == 90:      # displayed = coded turned 90° counter-clockwise
            box = (coded_w - f.y2, f.x1, coded_w - f.y1, f.x2)
        elif rotation == 180:
            box = (coded_w - f.x2, coded_h - f.y2, coded_w - f.x1, coded_h - f.y1)
        elif rotation == 270:
            box = (f.y1, coded_h - f.x2, f.y2, coded_h - f.x1)
        else:
            box = (f.x1, f.y1, f.x2, f.y2)
        out.append(f.moved(*box))
    return out


class RegionLog:
    """The JSON log of every hidden region, written as it goes (memory stays flat)."""

    def __init__(self, path: Path, source: str, detector: str, settings: BlurSettings):
        self.handle = open(path, "w", encoding="utf-8")
        header = {"source": source, "detector": detector, "detect_every": settings.detect_every,
                  "pad": settings.pad, "mode": settings.mode}
        self.handle.write(json.dumps(header)[:-1] + ', "regions": [')
        self.count = 0

    def add(self, frame: int, seconds: float, box: tuple[int, int, int, int], score: float, origin: str) -> None:
        entry = {"frame": frame, "time": round(seconds, 6), "box": list(box), "score": round(score, 4),
                 "origin": origin}
        self.handle.write(("," if self.count else "") + "\n" + json.dumps(entry))
        self.count += 1

    def close(self, frames: int) -> None:
        self.handle.write(f'\n], "frames": {frames}, "region_count": {self.count}}}\n')
        self.handle.close()

    def abort(self) -> None:
        self.handle.close()


class PrivacyPipeline:
    def __init__(self, detector, settings: BlurSettings, max_width: int, max_height: int):
        self.detector = detector
        self.settings = settings
        self.max_width, self.max_height = max_width, max_height

    def run(self, source: Path, paths: PrivacyOutputs, progress=lambda fraction: None, check=lambda: None) -> dict:
        info = vp.probe_video(source, self.max_width, self.max_height)
        paths.temp.parent.mkdir(parents=True, exist_ok=True)
        paths.remove_partial()  # a restarted job starts again from the first frame
        regions_log = RegionLog(paths.log_temp, source.name, self.detector.name, self.settings)
        try:
            frames = self._process(source, info, paths.temp, regions_log, progress, check)
            regions_log.close(frames)
        except BaseException:
            regions_log.abort()
            paths.remove_partial()
            raise
        os.replace(paths.log_temp, paths.log_final)
        os.replace(paths.temp, paths.final)  # the video last: its name means "complete"
        log.info("blurred %s: %d frames, %d regions -> %s", source.name, frames, regions_log.count, paths.final.name)
        return {"frames": frames, "regions": regions_log.count}

    def _process(self, source: Path, info: vp.MediaInfo, temp: Path, regions_log: RegionLog, progress, check) -> int:
        settings = self.settings
        with vp.VideoRewriter(source, temp, info.rotation, settings.preset, settings.crf) as video:
            coded_w, coded_h = video.coded_width, video.coded_height
            index, started = 0, time.monotonic()
            detect_size = self._detect_size(info)

            def redetect(frame: vp.VideoFrame) -> list[Detection] | None:
                faces, whole = self._detect(frame, info.rotation, detect_size, coded_w, coded_h,
                                            f"pts {frame.pts}")
                return None if whole else faces

            tracker = FaceTracker(settings.detect_every, settings.hold_frames, redetect=redetect)

            def emit(decided) -> None:
                for number, frame, regions, whole in decided:
                    video.write(self._hide(frame, regions, whole, number, video.width, video.height, regions_log,
                                           video.time_base))

            for frame in video.frames():
                check()
                faces, whole = None, False
                if tracker.is_detection_frame(index):
                    faces, whole = self._detect(frame, info.rotation, detect_size, coded_w, coded_h,
                                                f"frame {index + 1}")
                emit(tracker.push(index, frame, faces, whole))
                index += 1
                if info.frame_count and time.monotonic() - started > 1:
                    progress(min(0.99, index / info.frame_count))
                    started = time.monotonic()
            emit(tracker.finish())
            video.finish()
        if index == 0:
            raise vp.MediaError("no_frames", f"{source.name} contains no decodable video frames")
        return index

    # -- detection -------------------------------------------------------------------------
    def _detect_size(self, info: vp.MediaInfo) -> tuple[int, int]:
        """The upright detection copy's size: at most `detect_width` wide, aspect kept."""
        width, height = info.width, info.height
        if self.settings.detect_width and width > self.settings.detect_width:
            height, width = max(1, round(height * self.settings.detect_width / width)), self.settings.detect_width
        return width, height

    def _detect(self, frame: vp.VideoFrame, rotation: int, size: tuple[int, int], coded_w: int, coded_h: int,
                where) -> tuple[list[Detection] | None, bool]:
        width, height = size
        if rotation in (90, 270):
            width, height = height, width  # the coded picture is the upright one turned
        try:
            rgb = vp.frame_to_rgb(frame, width, height)
            if rotation:
                rgb = cv2.rotate(rgb, vp.DISPLAY_ROTATION[rotation])
            faces = self.detector.detect(np.ascontiguousarray(rgb))
        except (DetectorError, vp.MediaError, cv2.error) as exc:
            if self.settings.fail_closed == "fail_job":
                raise DetectorError(f"detection failed at {where}: {exc}") from exc
            log.warning("detection failed at %s, hiding the whole frame: %s", where, exc)
            return [], True
        scale_x, scale_y = coded_w / width, coded_h / height
        return upright_boxes_to_coded([f.scaled(scale_x, scale_y) for f in faces],
                                      rotation, coded_w, coded_h), False

    # -- hiding ----------------------------------------------------------------------------
    def _hide(self, frame: vp.VideoFrame, regions: list[Region], whole: bool, number: int, width: int,
              height: int, regions_log: RegionLog, time_base) -> vp.VideoFrame:
        """The frame with its regions hidden (a new frame), or the same frame when it has none."""
        if not regions and not whole:
            return frame
        seconds = float(frame.pts * time_base) if time_base else 0.0
        if whole:
            boxes = [(0, 0, width, height)]
        else:  # a box held or moved past the frame's edge has nothing left to hide
            placed = [(r, face_blur.padded((r.box.x1, r.box.y1, r.box.x2, r.box.y2), self.settings.pad,
                                           width, height)) for r in regions]
            placed = [(r, b) for r, b in placed if b[2] > b[0] and b[3] > b[1]]
            regions, boxes = [r for r, _ in placed], [b for _, b in placed]
            if not boxes:
                return frame
        array = vp.yuv420p_array(frame)
        face_blur.hide_regions(face_blur.yuv420_planes(array, width, height), boxes,
                               "fill" if whole else self.settings.mode, self.settings.cells)
        hidden = vp.yuv420p_frame(array, like=frame)
        if whole:
            regions_log.add(number + 1, seconds, boxes[0], 0.0, "fail-closed")
        else:
            for region, box in zip(regions, boxes):
                regions_log.add(number + 1, seconds, box, region.box.score, region.origin)
        return hidden
