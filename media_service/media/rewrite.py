"""A whole video re-encoded picture by picture, keeping its timestamps, rotation and audio (privacy)."""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from media_service.media.container import open_input
from media_service.media.decode import display_times

log = logging.getLogger("video_processor")  # the door's name: log lines read as they did before the split


# Audio codecs the MP4 muxer takes as they are; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}
MP4_LIKE = {".mp4", ".mov", ".m4v"}
# Output container by file extension (the file itself may be a /proc/self/fd path without one).
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
               ".divx": "avi"}

# Containers that store only decode order (AVI): frames reordered by B-frames would play at wrong times.
_NO_PRESENTATION_TIMES = {".avi", ".divx"}


class VideoRewriter:
    """Re-encode a video's pictures one by one and keep the rest: the coded size (an odd edge grows
    by one pixel: yuv420p needs even sizes), every timestamp, the display rotation, the audio
    (copied, or re-encoded to AAC where an MP4 cannot hold it) and faststart.

        with VideoRewriter(source, target, rotation, preset, crf, ".mp4") as rewriter:
            for frame in rewriter.frames():   # yuv420p at (width, height), rising timestamps
                rewriter.write(frame)          # the same frame, or a changed copy of it
            rewriter.finish()

    Frames may be written later than they are read (a tracker holds a few back); audio packets are
    written as they are read. A damaged tail ends the video after what could be decoded.
    """

    def __init__(self, source: Path | str, target: Path | str, rotation: int, preset: str, crf: int, suffix: str,
                 name: str | None = None):
        """`suffix` (".mp4", ".mkv", ...) chooses the output container; `name` is what messages
        call the source."""
        suffix = suffix.lower()
        options = {"movflags": "+faststart"} if suffix in MP4_LIKE else {}
        self._inp = open_input(source, name)
        try:
            self._out = av.open(str(target), "w", format=_CONTAINERS.get(suffix, "mp4"), options=options)
        except BaseException:
            self._inp.close()
            raise
        vin = self._inp.streams.video[0]
        vin.codec_context.thread_type = "AUTO"
        self.coded_width, self.coded_height = vin.codec_context.width, vin.codec_context.height
        self.width, self.height = self.coded_width + self.coded_width % 2, self.coded_height + self.coded_height % 2
        self.time_base = vin.time_base or Fraction(1, 90000)
        vout = self._out.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or Fraction(25))
        vout.width, vout.height, vout.pix_fmt = self.width, self.height, "yuv420p"
        vout.codec_context.time_base = self.time_base
        vout.codec_context.thread_type = "FRAME"
        vout.codec_context.options = {"preset": preset, "crf": str(crf)}
        if suffix in _NO_PRESENTATION_TIMES:  # frames must be stored in display order there: no B-frames
            vout.codec_context.options = {**vout.codec_context.options, "bframes": "0"}
        if rotation:
            vout.set_display_rotation(rotation)
        self._vin, self._vout = vin, vout
        self._ain, self._aout, self._resample = self._audio(suffix)

    def _audio(self, suffix: str):
        if not self._inp.streams.audio:
            return None, None, None
        ain = self._inp.streams.audio[0]
        codec = ain.codec_context.name
        if suffix not in MP4_LIKE or codec in MP4_AUDIO:
            return ain, self._out.add_stream_from_template(ain), None
        log.info("audio %s cannot go into %s as it is: re-encoding to AAC", codec, suffix)
        aout = self._out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
        return ain, aout, av.AudioResampler(format="fltp", layout="stereo", rate=aout.codec_context.sample_rate)

    def frames(self) -> Iterator[av.VideoFrame]:
        """Every decoded frame at its display time (`display_times`), rising."""
        last_pts = None
        rate = self._vin.guessed_rate or self._vin.average_rate or Fraction(25)
        for frame, stamp in display_times(self._decoded(), 1 / Fraction(rate) / self.time_base):
            pts = round(stamp)
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1  # the encoder needs rising timestamps
            last_pts = pts
            if frame.format.name != "yuv420p" or (frame.width, frame.height) != (self.width, self.height):
                frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
            frame.pts, frame.time_base = pts, self.time_base
            yield frame

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The video's frames as decoded; audio packets are written on the way."""
        streams = [self._vin] + ([self._ain] if self._ain is not None else [])
        for packet in _packets(self._inp, streams):
            if packet.stream is self._ain:
                self._audio_packet(packet)
                continue
            try:
                yield from packet.decode()
            except av.FFmpegError as exc:
                log.warning("video decoding stopped: %s", exc)
                return

    def write(self, frame: av.VideoFrame) -> None:
        self._out.mux(self._vout.encode(frame))

    def finish(self) -> None:
        self._out.mux(self._vout.encode(None))
        if self._aout is not None and self._resample is not None:
            self._audio_packet(None)

    def _audio_packet(self, packet) -> None:
        if self._resample is None:
            if packet.dts is not None:  # the demuxer's flush packet carries nothing
                packet.stream = self._aout
                self._out.mux(packet)
            return
        for frame in packet.decode() if packet is not None else [None]:
            for converted in self._resample.resample(frame):
                self._out.mux(self._aout.encode(converted))
        if packet is None:
            self._out.mux(self._aout.encode(None))

    def close(self) -> None:
        self._out.close()
        self._inp.close()

    def __enter__(self) -> "VideoRewriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _packets(container, streams) -> Iterator[av.Packet]:
    """Demuxed packets; a damaged tail ends the stream after what could be read."""
    try:
        yield from container.demux(*streams)
    except av.FFmpegError as exc:
        log.warning("reading stopped early: %s", exc)
