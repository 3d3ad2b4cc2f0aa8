"""One privacy job: a video in, the same video with every face hidden out.

One streaming pass: decode → detect every k-th frame on a downscaled upright copy → track →
hide the regions on the yuv420p planes → check each hidden region with the detector again and
hide harder where a face is still found → encode H.264 with the source's timestamps, while the
audio packets are copied (or re-encoded to AAC when the container cannot hold them). The source
is read and the outputs written through descriptors opened inside their configured folders. The
output and its JSON region log are written under temporary names and renamed only when complete;
a restarted job starts again from the first frame.
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

from media_service import media as vp
from media_service import metrics
from media_service.contract import PrivacyOutputs
from media_service.detectors import Detection
from media_service.errors import DetectorError
from media_service.paths import ConfinedDir, ConfinedFile, fd_path
from media_service.privacy import blur as face_blur
from media_service.privacy.tracking import FaceTracker, Region

log = logging.getLogger(__name__)

# The check of a hidden region looks at it with its surroundings at most this many pixels across:
# the region then fills about half of it, where CenterFace is surest, and a check costs a few ms.
CHECK_SIZE = 320
# ...and at least this many: a small face (heads of 10 px in a crowd) is found on the whole frame
# thanks to the body around it, but not in a crop of its own box's size (issue 20, vtest.avi).
CHECK_MIN = 128


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
    verify_threshold: float = 0.3        # a hidden region where the detector still sees a face at this score...
    max_blacked_out_percent: float = 5.0  # ...and how many frames may be hidden whole before the job fails


class TooManyBlackedOut(vp.MediaError):
    def __init__(self, blacked_out: int, frames: int, bound: float):
        super().__init__("too_many_hidden_frames",
                         f"detection failed on {blacked_out} of {frames} frames, which were hidden whole "
                         f"(more than [Privacy] max_blacked_out_percent = {bound:g}%)")


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

    def __init__(self, handle, source: str, detector: str, settings: BlurSettings):
        self.handle = handle
        header = {"source": source, "detector": detector, "detect_every": settings.detect_every,
                  "pad": settings.pad, "mode": settings.mode, "cells": settings.cells,
                  "verify_threshold": settings.verify_threshold}
        self.handle.write(json.dumps(header)[:-1] + ', "regions": [')
        self.count = 0
        self.counts = {"blacked_out_frames": 0, "hidden_harder": 0, "filled": 0}

    def add(self, frame: int, seconds: float, box: tuple[int, int, int, int], score: float, origin: str,
            check: str | None = None) -> None:
        entry = {"frame": frame, "time": round(seconds, 6), "box": list(box), "score": round(score, 4),
                 "origin": origin}
        if check:
            entry["check"] = check  # hidden harder / filled: the detector still saw a face after the blur
        self.handle.write(("," if self.count else "") + "\n" + json.dumps(entry))
        self.count += 1

    def close(self, frames: int) -> None:
        tail = {"frames": frames, "region_count": self.count, **self.counts}
        self.handle.write("\n], " + json.dumps(tail)[1:] + "\n")
        self.handle.close()

    def abort(self) -> None:
        self.handle.close()


class PrivacyPipeline:
    def __init__(self, detector, settings: BlurSettings, max_width: int, max_height: int):
        self.detector = detector
        self.settings = settings
        self.max_width, self.max_height = max_width, max_height

    def run(self, source: Path, outputs: PrivacyOutputs, progress=lambda fraction: None, check=lambda: None,
            input_root: Path | None = None, output_root: Path | None = None, before_publish=lambda: None) -> dict:
        """Hide every face of `source` (inside `input_root`) into `outputs` (inside `output_root`);
        the roots default to the files' own folders; `before_publish` runs just before the outputs
        get their final names. Returns counts for the job's status."""
        with (ConfinedFile(input_root or source.parent, source) as opened,
              ConfinedDir(output_root or outputs.final.parent, outputs.final.parent) as folder):
            info = vp.probe_video(opened.path, self.max_width, self.max_height, name=opened.name)
            video_fd = folder.create(outputs.temp.name)  # a restarted job starts again from the first frame
            regions_log = RegionLog(os.fdopen(folder.create(outputs.log_temp.name), "w", encoding="utf-8"),
                                    opened.name, self.detector.name, self.settings)
            try:
                frames = self._process(opened, info, fd_path(video_fd), outputs.final.suffix, regions_log,
                                       progress, check)
                before_publish()
                regions_log.close(frames)
            except BaseException:
                regions_log.abort()
                for name in (outputs.temp.name, outputs.log_temp.name):
                    folder.unlink(name)
                raise
            finally:
                os.close(video_fd)
            counts = {"frames": frames, "regions": regions_log.count, **regions_log.counts}
            bound = self.settings.max_blacked_out_percent
            if regions_log.counts["blacked_out_frames"] > frames * bound / 100:
                for name in (outputs.temp.name, outputs.log_temp.name):
                    folder.unlink(name)
                raise TooManyBlackedOut(regions_log.counts["blacked_out_frames"], frames, bound)
            folder.replace(outputs.log_temp.name, outputs.log_final.name)
            folder.replace(outputs.temp.name, outputs.final.name)  # the video last: its name means "complete"
        log.info("blurred %s: %s -> %s", opened.name, counts, outputs.final.name)
        return counts

    def _process(self, opened: ConfinedFile, info: vp.MediaInfo, target: str, suffix: str, regions_log: RegionLog,
                 progress, check) -> int:
        settings = self.settings
        with vp.VideoRewriter(opened.path, target, info.rotation, settings.preset, settings.crf, suffix,
                              name=opened.name) as video:
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
                                           video.time_base, info.rotation))

            for frame in video.frames():
                check()
                faces, whole = None, False
                if tracker.is_detection_frame(index):
                    faces, whole = self._detect(frame, info.rotation, detect_size, coded_w, coded_h,
                                                f"frame {index + 1}")
                emit(tracker.push(index, frame, faces, whole))
                index += 1
                # After the first frame (a job shows it has started, however short), then once a second.
                if info.frame_count and (index == 1 or time.monotonic() - started > 1):
                    progress(min(0.99, index / info.frame_count))
                    started = time.monotonic()
            emit(tracker.finish())
            video.finish()
        if index == 0:
            raise vp.MediaError("no_frames", f"{opened.name} contains no decodable video frames")
        metrics.count("frames", index, stage="blur")
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
              height: int, regions_log: RegionLog, time_base, rotation: int) -> vp.VideoFrame:
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
        planes = face_blur.yuv420_planes(array, width, height)
        face_blur.hide_regions(planes, boxes, "fill" if whole else self.settings.mode, self.settings.cells)
        if whole:
            regions_log.counts["blacked_out_frames"] += 1
            regions_log.add(number + 1, seconds, boxes[0], 0.0, "fail-closed")
        else:
            checks = self._verify(planes, boxes, rotation, regions_log)
            for region, box, checked in zip(regions, boxes, checks):
                regions_log.add(number + 1, seconds, box, region.box.score, region.origin, checked)
        return vp.yuv420p_frame(array, like=frame)

    def _verify(self, planes, boxes, rotation: int, regions_log: RegionLog) -> list:
        """Look again at each hidden box: where the detector still finds a face at
        `verify_threshold`, hide it with half the cells; where it still does, fill it. Changes
        the planes in place; returns per box None, "hidden harder" or "filled"."""
        results = []
        for box in boxes:
            if not self._face_left(planes, box, rotation):
                results.append(None)
                continue
            face_blur.hide_regions(planes, [box], self.settings.mode, max(2, self.settings.cells // 2))
            if self._face_left(planes, box, rotation):
                face_blur.hide_regions(planes, [box], "fill", self.settings.cells)
                regions_log.counts["filled"] += 1
                results.append("filled")
            else:
                regions_log.counts["hidden_harder"] += 1
                results.append("hidden harder")
        return results

    def _face_left(self, planes, box: tuple[int, int, int, int], rotation: int) -> bool:
        """Does the detector find a face overlapping `box` in a crop around it (upright)?"""
        x1, y1, x2, y2 = box
        height, width = planes[0].shape
        margin_x = max((x2 - x1) // 2, (CHECK_MIN - (x2 - x1)) // 2)
        margin_y = max((y2 - y1) // 2, (CHECK_MIN - (y2 - y1)) // 2)
        # Even edges, so that the chroma planes line up with the luma crop.
        cx1, cy1 = max(0, x1 - margin_x) & ~1, max(0, y1 - margin_y) & ~1
        cx2, cy2 = min(width, x2 + margin_x) & ~1, min(height, y2 + margin_y) & ~1
        if cx2 <= cx1 or cy2 <= cy1:
            return False
        crop = face_blur.crop_rgb(planes, cx1, cy1, cx2, cy2)
        scale = min(1.0, CHECK_SIZE / max(crop.shape[:2]))
        if scale < 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        upright = cv2.rotate(crop, vp.DISPLAY_ROTATION[rotation]) if rotation else crop
        try:
            found = self.detector.detect(np.ascontiguousarray(upright), self.settings.verify_threshold)
        except DetectorError as exc:  # cannot check: the strongest hiding is the safe answer
            log.warning("the check of a hidden region failed (%s): filling it", exc)
            return True
        crop_h, crop_w = crop.shape[:2]
        local = upright_boxes_to_coded(found, rotation, crop_w, crop_h)
        inner = ((x1 - cx1) * scale, (y1 - cy1) * scale, (x2 - cx1) * scale, (y2 - cy1) * scale)
        return any(_overlaps(face, inner) for face in local)


def _overlaps(face: Detection, box: tuple[float, float, float, float]) -> bool:
    """Is most of the face inside the hidden box (not a face next to it, which has its own box)?"""
    ix1, iy1 = max(face.x1, box[0]), max(face.y1, box[1])
    ix2, iy2 = min(face.x2, box[2]), min(face.y2, box[3])
    area = max(0.0, face.x2 - face.x1) * max(0.0, face.y2 - face.y1)
    return area > 0 and max(0.0, ix2 - ix1) * max(0.0, iy2 - iy1) >= 0.5 * area
