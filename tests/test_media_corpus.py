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


def by_name(name: str) -> Case:
    return next(case for case in CASES if case.file_name == name)


def test_decoding_is_planned_only_where_the_container_stores_each_frames_presentation_time(corpus):
    """MP4/MOV with H.264 or HEVC: the packets' times plan which frames the decoder may skip.
    AVI (decode order, packed B-frames), raw streams, MPEG-TS and Matroska: every frame is decoded."""
    planned = {name: vp.probe_video(make_case(by_name(name), corpus), 9999, 9999).frame_pts is not None
               for name in ("h264_bframes_open_gop.mp4", "hevc.mp4", "h264_edit_list.mp4", "mpeg4_bframes.avi",
                            "xvid_packed_bframes.avi", "h264_raw.h264", "h264_bframes_open_gop.ts",
                            "h264_bframes_open_gop.mkv", "mjpeg.mov")}
    assert planned == {"h264_bframes_open_gop.mp4": True, "hevc.mp4": True, "h264_edit_list.mp4": False,
                       "mpeg4_bframes.avi": False, "xvid_packed_bframes.avi": False, "h264_raw.h264": False,
                       "h264_bframes_open_gop.ts": False, "h264_bframes_open_gop.mkv": False, "mjpeg.mov": False}


@pytest.mark.parametrize("name", ["xvid_packed_bframes.avi", "h264_raw.h264", "h264_bframes_open_gop.mp4"])
def test_a_resumed_decode_continues_exactly_where_timestamps_cannot_be_trusted(corpus, name):
    """A stream that cannot seek by its timestamps is read again from the start and counted to the
    checkpoint: the frames after it are the same, with the same numbers and pixels."""
    case = by_name(name)
    source = make_case(case, corpus)
    reference = ffmpeg_decode(source, case.size)
    info = vp.probe_video(source, 9999, 9999)

    def run(resume=None):
        sampler = vp.Sampler(RATE, "timestamp", info.average_fps, resume.next_sample if resume else 0)
        return [(s.number, read_number(coded_picture(s.frame.to_ndarray(format="bgr24"), case)), point)
                for s, point in vp.decode_samples(source, sampler, info, resume)]

    full = run()
    assert [n for n, _, _ in full] == reference.sampled(RATE)
    assert [shown for _, shown, _ in full] == [reference.numbers[n - 1] for n, _, _ in full]
    resumed = run(full[4][2])
    assert [(n, shown) for n, shown, _ in resumed] == [(n, shown) for n, shown, _ in full[5:]]


def test_an_extension_that_lies_is_read_by_content_and_only_a_non_video_fails(service, corpus, tmp_path):
    avi = make_case(by_name("mpeg4_bframes.avi"), corpus)
    disguised = tmp_path / "camera.mp4"
    disguised.write_bytes(avi.read_bytes())
    upload, tasks = process(service, disguised, frame_rate=RATE, per_task=PER_TASK)
    assert upload["status"] == 1 and [n for t in tasks for n in t["original_frames"]] == \
        ffmpeg_decode(avi, SIZE_OF["mpeg4_bframes.avi"]).sampled(RATE)
    text = tmp_path / "notes.avi"
    text.write_text("not a video at all\n" * 50)
    upload, tasks = process(service, text, frame_rate=RATE)
    assert upload["status"] == 2 and tasks == [] and "unreadable_media" in upload["errorMessage"]["message"]


SIZE_OF = {case.file_name: case.size for case in CASES}


def test_a_truncated_avi_is_damage_measured_by_its_declared_duration(make_service, corpus, tmp_path):
    """Cut where its index was (AVI keeps it at the end): the header's duration is all that is left
    to say frames are missing. Beyond the tolerance the upload fails, saying how it counted; within
    it, the upload records the counts."""
    whole = make_case(by_name("mpeg4_bframes.avi"), corpus)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    decodable = len(ffmpeg_decode(cut, SIZE_OF["mpeg4_bframes.avi"]).times)
    assert 20 < decodable < 50
    strict = make_service()
    upload, tasks = process(strict, cut, frame_rate=RATE)
    message = upload["errorMessage"]["message"]
    assert upload["status"] == 2 and tasks == [] and message.startswith("frames_lost"), message
    assert f"decoded {decodable} of the 60 frames" in message and "flagged 1 packets as corrupt" in message
    lenient = make_service(CONTENT_MAX_LOST_FRAMES_PERCENT="80")
    upload, tasks = process(lenient, cut, frame_rate=RATE)
    assert upload["status"] == 1 and (upload["framesExpected"], upload["framesDecoded"]) == (60, decodable)


def test_corrupt_packets_the_decoder_refuses_are_passed_over_and_counted(make_service, corpus, tmp_path):
    """Three frames' data zeroed in place: the decoder refuses those packets, the ffmpeg CLI goes on
    past them, and so does the service; the refused ones are the frames lost."""
    import av

    clean = make_case(by_name("msmpeg4v3.avi"), corpus)
    with av.open(str(clean)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clean.read_bytes())
    for position, size in packets[10:13]:
        data[position:position + size] = bytes(size)
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    reference = ffmpeg_decode(damaged, SIZE_OF["msmpeg4v3.avi"])
    assert len(reference.times) == 57
    upload, tasks = process(make_service(CONTENT_MAX_LOST_FRAMES_PERCENT="10"), damaged, frame_rate=RATE)
    assert upload["status"] == 1 and (upload["framesExpected"], upload["framesDecoded"]) == (60, 57)
    assert [n for t in tasks for n in t["original_frames"]] == reference.sampled(RATE)


@pytest.mark.parametrize("name", ["mpeg4_bframes.avi", "xvid_packed_bframes.avi", "h264_vfr_phone.mp4"])
def test_the_privacy_pipeline_keeps_every_frame_and_its_time(corpus, tmp_path, name):
    """The blur job reads media through the same code: every frame FFmpeg decodes comes out once,
    in order, at the time FFmpeg gives it."""
    from media_service.contract import PrivacyOutputs
    from media_service.detectors.centerface import CenterFace
    from media_service.privacy.pipeline import BlurSettings, PrivacyPipeline

    case = by_name(name)
    source = make_case(case, corpus)
    paths = PrivacyOutputs.for_source(source, tmp_path)
    settings = BlurSettings(detect_every=5, detect_width=320, hold_frames=3, pad=1.3, mode="ellipse", cells=8,
                            fail_closed="blur_frame", preset="veryfast", crf=18)
    PrivacyPipeline(CenterFace(0.5, 2), settings, 7680, 4320).run(source, paths)
    before, after = ffmpeg_decode(source, case.size), ffmpeg_decode(paths.final, case.size)
    assert after.numbers == before.numbers
    assert [t - after.times[0] for t in after.times] == [t - before.times[0] for t in before.times]


@pytest.mark.parametrize("name", ["xvid_packed_bframes.avi", "cinepak_null_frames.avi", "h264_bframes_open_gop.mkv",
                                  "h264_edit_list.mp4", "h264_anamorphic.mp4"])
def test_the_dataset_builder_finds_a_tasks_source_frames_by_their_numbers(corpus, name):
    """`[Dataset] source_resolution` decodes the source again at a task's `original_frames`: the
    pictures must be the frames those numbers name in a full decode."""
    from types import SimpleNamespace

    from media_service.datasets.source import source_frames

    case = by_name(name)
    source = make_case(case, corpus)
    reference = ffmpeg_decode(source, case.size)
    numbers = reference.sampled(RATE)[3:7]
    pictures = list(source_frames(source, numbers, SimpleNamespace(max_width=9999, max_height=9999)))
    shown = [read_number(coded_picture(cv2.cvtColor(p, cv2.COLOR_RGB2BGR), case)) for p in pictures]
    assert shown == [reference.numbers[n - 1] for n in numbers]
