"""The media package behind `video_processor` (issue 19): `decode_frames_at` judged against what the
ffmpeg CLI decodes, and the task video size without a probe."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import video_processor as vp
from tests.conftest import SHARED_MEDIA
from tests.corpus import CASES, ffmpeg_decode, make_case
from tests.media import read_number


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


# Planned and seeked to near the first number; B-frames packed in AVI (counted from the start);
# an edit list whose first frames decode only as references (not planned).
@pytest.mark.parametrize("name", ["h264_bframes_open_gop.mp4", "xvid_packed_bframes.avi", "h264_edit_list.mp4"])
def test_decode_frames_at_gives_the_frames_a_full_ffmpeg_decode_numbers_so(corpus, name):
    case = next(c for c in CASES if c.file_name == name)
    source = make_case(case, corpus)
    reference = ffmpeg_decode(source, case.size)  # each frame's drawn number, in the CLI's output order
    total = len(reference.numbers)
    numbers = [total - 1, 17, 3, 18, total // 2 + 5, 17]  # any order, repeats: each once, in output order
    wanted = sorted(set(numbers))
    frames = list(vp.decode_frames_at(source, numbers))
    assert [f.number for f in frames] == wanted
    assert [read_number(f.frame.to_ndarray(format="bgr24")) for f in frames] == [reference.numbers[n - 1]
                                                                                 for n in wanted]
    info = vp.probe_video(source, 9999, 9999)
    again = [(f.number, read_number(f.frame.to_ndarray(format="bgr24")))
             for f in vp.decode_frames_at(source, [1, total], info, name="clip")]
    assert again == [(1, reference.numbers[0]), (total, reference.numbers[-1])]
    # Past the end: what there is, then no more (the caller counts); nothing asked, nothing decoded.
    assert [f.number for f in vp.decode_frames_at(source, [total, total + 1, total + 9])] == [total]
    assert list(vp.decode_frames_at(source, [])) == []


def test_decode_frames_at_on_a_real_clip_matches_the_ffmpeg_clis_pictures():
    clip = SHARED_MEDIA / "bbb-720p-25fps.mp4"  # 132 frames of H.264 Main with B-frames, and audio
    numbers = [10, 61, 132]
    select = "+".join(f"eq(n\\,{n - 1})" for n in numbers)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-map", "0:v:0", "-vf", f"select={select}",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    reference = np.frombuffer(raw, np.uint8).reshape(-1, 720, 1280).astype(np.int16)
    frames = list(vp.decode_frames_at(clip, numbers))
    assert [f.number for f in frames] == numbers and len(reference) == len(numbers)
    for mine, theirs in zip(frames, reference):
        assert np.abs(mine.frame.to_ndarray(format="gray").astype(np.int16) - theirs).mean() < 0.5
    assert np.abs(reference[0] - reference[1]).mean() > 5  # the pictures really tell the frames apart


@pytest.mark.parametrize("width,height,max_height,expected", [
    (1920, 1080, 720, (1280, 720)),
    (1920, 1080, 0, (1920, 1080)),     # 0: never downscaled
    (641, 481, 0, (642, 482)),         # odd edges grow by one for yuv420p
    (1080, 1920, 721, (406, 720)),     # portrait, an odd limit made even
    (320, 240, 480, (320, 240)),       # never upscaled
])
def test_the_task_video_size_needs_only_the_displayed_size(width, height, max_height, expected):
    assert vp.task_video_size(width, height, max_height) == expected
    info = vp.MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", "h264", width, height, 90, 25, 25, 1, 25, False, False)
    assert vp.output_size(info, max_height) == expected
