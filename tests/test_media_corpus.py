"""Real-world encodings, cut end to end (issue 18): every case of `tests.corpus` goes through the
service as Node sends it, and each sampled frame must be exactly the one a full decode by the
ffmpeg CLI picks at the requested rate (its number read back from the task video's pixels); each
task video must pass the container check and play in headless Chromium."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import video_processor as vp
from tests.browser import wait_js
from tests.corpus import CASES, Case, display_size, ffmpeg_decode, make_case
from tests.media import decode_frames, read_number
from tests.test_pipeline import process, stored_file

RATE, PER_TASK = 5, 8  # several tasks per clip: the task boundaries are crossed too


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


def coded_picture(image: np.ndarray, case: Case) -> np.ndarray:
    """A task frame turned back to the source's coded orientation and size, to read its number."""
    if case.rotation:
        image = cv2.rotate(image, {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
                                   270: cv2.ROTATE_90_COUNTERCLOCKWISE}[case.rotation])
    if image.shape[1::-1] != case.size:
        image = cv2.resize(image, case.size, interpolation=cv2.INTER_AREA)
    return image


def play_in_browser(browser, video) -> None:
    """The task video opened by Chromium: it decodes (a size, no error) and its time advances."""
    browser.get(video.as_uri())
    state = wait_js(browser, "const v = document.querySelector('video'); if (!v) return null; v.muted = true;"
                             "if (v.paused && !v.ended) v.play().catch(() => {});"
                             "return v.error ? ['error', v.error.code] : v.readyState >= 2 && v.videoWidth > 0"
                             " && (v.currentTime > 0 || v.ended) && [v.videoWidth, v.videoHeight];",
                    timeout=20, what=f"{video.name} to play")
    assert state[0] != "error", state
    return state


@pytest.mark.parametrize("case", CASES, ids=[case.file_name for case in CASES])
def test_a_real_encoding_is_cut_at_the_frames_a_full_ffmpeg_decode_picks(service, browser, corpus, case):
    source = make_case(case, corpus)
    reference = ffmpeg_decode(source, case.size)
    upload, tasks = process(service, source, frame_rate=RATE, per_task=PER_TASK)
    assert upload["status"] == 1, upload.get("errorMessage")
    assert "framesExpected" not in upload  # nothing was called lost
    picked = [number for task in tasks for number in task["original_frames"]]
    assert picked == reference.sampled(RATE)

    width, height = display_size(source, case)
    size = (width + width % 2, height + height % 2)
    for task in tasks:
        assert (task["videoResolutionWidth"], task["videoResolutionHeight"]) == size
        video = stored_file(service, task["S3_url"])
        assert vp.check_task_video(video).problems(task["frameCount"], size, RATE) == []
        shown = [read_number(coded_picture(image, case)) for image in decode_frames(video)]
        assert shown == [reference.numbers[n - 1] for n in task["original_frames"]], task["taskName"]
    assert play_in_browser(browser, stored_file(service, tasks[-1]["S3_url"])) == list(size)
