"""A task video as a browser gets it: packets, codec, pixel format, size, rate, box order, both ends decode."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av


@dataclass
class VideoCheck:
    frame_count: int      # packets in the stream: x264 writes one per frame it was given
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    faststart: bool
    codec: str
    ends_decode: bool     # the first frame and the last one decode

    def problems(self, frames: int, size: tuple[int, int], rate: int) -> list[str]:
        """How this file differs from the task video planned: `frames` frames of `size` at `rate`."""
        expected = {"frames": frames, "codec": "h264", "pixel format": "yuv420p", "size": size, "rate": rate,
                    "moov before mdat": True, "first and last frame decode": True}
        found = {"frames": self.frame_count, "codec": self.codec, "pixel format": self.pix_fmt,
                 "size": (self.width, self.height), "rate": self.fps, "moov before mdat": self.faststart,
                 "first and last frame decode": self.ends_decode}
        return [f"{name} {found[name]} (planned {want})" for name, want in expected.items() if found[name] != want]


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (to see that `moov` precedes `mdat`)."""
    boxes = []
    with open(path, "rb") as handle:
        while True:
            header = handle.read(8)
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
                handle.seek(size - 16, 1)
            elif size == 0:
                boxes.append(kind.decode("latin-1"))
                break
            else:
                handle.seek(size - 8, 1)
            boxes.append(kind.decode("latin-1"))
    return boxes


def check_task_video(path: Path) -> VideoCheck:
    """What a browser would get, read from the container: the packets (not decoded), codec, pixel
    format, size, rate and box order; then the first frame and the last group of pictures decoded,
    which proves the stream decodes from end to end without decoding all of it."""
    boxes = top_level_boxes(path)
    faststart = "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        last_keyframe, count = None, 0
        for packet in container.demux(stream):
            if packet.size:
                count += 1
                if packet.is_keyframe:
                    last_keyframe = packet.pts
        ends_decode = False
        if count and last_keyframe is not None:
            container.seek(0, stream=stream)
            first = next(container.decode(stream), None)
            container.seek(last_keyframe, stream=stream, backward=True, any_frame=False)
            tail = sum(1 for _ in container.decode(stream))
            ends_decode = first is not None and tail > 0
        return VideoCheck(count, ctx.pix_fmt or stream.format.name, ctx.width, ctx.height,
                          Fraction(stream.average_rate or 0), faststart, ctx.name, ends_decode)
