"""The privacy API (issue 5): every face hidden, the rest untouched, over real HTTP and real video."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import requests

from media_service.contract import PrivacyOutputs
from media_service.detectors.centerface import CenterFace
from media_service.errors import DetectorError
from media_service.privacy import blur
from media_service.privacy.pipeline import BlurSettings, PrivacyPipeline, TooManyBlackedOut
from tests.conftest import ROOT, service_env
from tests.faces import FaceScene, make_face_clip
from tests.held_worker import HeldWorker
from tests.helpers import ENDED, wait_for
from tests.media import ffprobe_stream, make_video, moov_before_mdat, psnr
from tests.rekognition_stand_in import RekognitionStandIn


@pytest.fixture(scope="module")
def strong_detector():
    """The check: CenterFace on every frame at full resolution, at an annotation-grade threshold."""
    return CenterFace(threshold=0.5, threads=2)


@pytest.fixture
def privacy(make_service, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    return make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos)), videos


def upright_frames(path: Path) -> list[np.ndarray]:
    """Decoded BGR frames as displayed (the stream's rotation applied)."""
    turn = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            rotation = round((frame.rotation or 0) / 90) % 4 * 90
            frames.append(cv2.rotate(image, turn[rotation]) if rotation else image)
    return frames


def wait_done(url: str, name: str, timeout: float = 120) -> dict:
    """The job's JSON status once it has ended."""
    def ended():
        state = requests.get(f"{url}/process_status", params={"filename": name, "format": "json"}, timeout=10).json()
        return state.get("state") in ENDED and state

    return wait_for(ended, timeout, 0.1, f"the privacy job of {name} to end")


def middle(image: np.ndarray, box) -> np.ndarray:
    """The middle of a face box, grey: eyes, nose and mouth, without the box's corners."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) // 5, (y2 - y1) // 5
    return cv2.cvtColor(image[y1 + dy:y2 - dy, x1 + dx:x2 - dx], cv2.COLOR_BGR2GRAY)


def face_detail(image: np.ndarray, box) -> float:
    """Variance of the Laplacian over the middle of a face box: fine detail left there."""
    return float(cv2.Laplacian(middle(image, box), cv2.CV_64F).var())


def detail_kept(before: np.ndarray, after: np.ndarray, box) -> float:
    """Correlation of the fine detail (Laplacian) of a face box before and after: about 0 when
    what was there is gone, whatever replaced it (blur, mosaic tiles or a fill)."""
    a, b = (cv2.Laplacian(middle(img, box), cv2.CV_64F).ravel() for img in (before, after))
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(abs(np.corrcoef(a, b)[0, 1]))


def assert_faces_hidden(scene: FaceScene, source: list, output: list, detector, smooth: bool = True) -> None:
    assert len(output) == len(source) == scene.frames
    for number, (before, after) in enumerate(zip(source, output), start=1):
        truth = scene.boxes(number)
        assert detector.detect(np.ascontiguousarray(before[:, :, ::-1])), f"frame {number}: no face in the source"
        assert detector.detect(np.ascontiguousarray(after[:, :, ::-1])) == [], f"frame {number}: a face is left"
        for box in truth:
            if box[2] - box[0] < 24:  # a sliver at the frame edge has no measurable detail
                continue
            assert detail_kept(before, after, box) < 0.2, (number, box)
            if smooth:  # a blur leaves almost no detail at all (a mosaic leaves its tile edges)
                assert face_detail(after, box) < min(30.0, 0.05 * face_detail(before, box)), (number, box)
        # Away from the faces (and the padding around them) nothing changed.
        keep = np.ones(before.shape[:2], bool)
        for x1, y1, x2, y2 in truth:
            w, h = x2 - x1, y2 - y1
            keep[max(0, y1 - h):y2 + h, max(0, x1 - w):x2 + w] = False
        assert psnr(before[keep], after[keep]) > 30, number  # re-encoding only (a blur gives < 20)


def test_every_face_in_every_frame_is_hidden_and_the_rest_kept(privacy, strong_detector):
    service, videos = privacy
    scene = make_face_clip(videos / "astronaut.mp4", frames=50, audio=True)
    answer = requests.post(f"{service.url}/process_video", data=b"astronaut.mp4", timeout=10)
    assert (answer.status_code, answer.text) == (202, "Success: file exists.")
    assert requests.get(f"{service.url}/process_status", params={"filename": "astronaut.mp4"}).text in ("False", "True")
    state = wait_done(service.url, "astronaut.mp4")
    assert state["state"] == "done" and state["progress"] == 100 and state["output"] == "astronaut-processed.mp4"
    plain = requests.get(f"{service.url}/process_status", params={"filename": "astronaut.mp4"})
    assert (plain.status_code, plain.text) == (200, "True")

    output = videos / "astronaut-processed.mp4"
    assert output.is_file() and not (videos / "astronaut-processed-temp.mp4").exists()
    video = ffprobe_stream(output)
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == ("h264", "yuv420p", 640, 360)
    assert video["avg_frame_rate"] == "25/1" and moov_before_mdat(output)
    audio = ffprobe_stream(output, "a:0")
    assert audio["codec_name"] == "aac" and float(audio["duration"]) > 1.9
    assert_faces_hidden(scene, upright_frames(videos / "astronaut.mp4"), upright_frames(output), strong_detector)

    log = json.loads((videos / "astronaut-processed.regions.json").read_text())
    assert log["frames"] == 50 and log["region_count"] == len(log["regions"])
    assert {r["frame"] for r in log["regions"]} == set(range(1, 51))
    assert {"detector", "tracker"} <= {r["origin"] for r in log["regions"]}
    first = log["regions"][0]
    assert set(first) == {"frame", "time", "box", "score", "origin"} and first["time"] == 0.0


def test_rotated_input_without_audio_stays_rotated(privacy, strong_detector):
    service, videos = privacy
    scene = make_face_clip(videos / "portrait.mp4", frames=20, size=(360, 640), audio=False, rotation=90)
    answer = requests.post(f"{service.url}/process_video", params={"filename": "portrait.mp4"}, timeout=10)
    assert answer.status_code == 202
    assert wait_done(service.url, "portrait.mp4")["state"] == "done"
    output = videos / "portrait-processed.mp4"
    with av.open(str(output)) as container:
        assert not container.streams.audio
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)  # coded as the source
        assert round(next(container.decode(stream)).rotation) % 360 == 90
    assert_faces_hidden(scene, upright_frames(videos / "portrait.mp4"), upright_frames(output), strong_detector)


def test_names_never_leave_the_input_directory(privacy, tmp_path):
    service, videos = privacy
    (tmp_path / "outside.mp4").write_bytes(b"not for you")
    (videos / "sub").mkdir()
    for name in ["../outside.mp4", str(tmp_path / "outside.mp4"), "sub/../../outside.mp4", "", "a\\..\\b.mp4"]:
        answer = requests.post(f"{service.url}/process_video", data=name.encode(), timeout=10)
        assert (answer.status_code, answer.text) == (400, "Error: invalid file name"), name
        answer = requests.post(f"{service.url}/process_video", params={"filename": name}, timeout=10)
        assert answer.status_code == 400, name
    os.symlink(tmp_path / "outside.mp4", videos / "link.mp4")
    assert requests.post(f"{service.url}/process_video", data=b"link.mp4").status_code == 400
    missing = requests.post(f"{service.url}/process_video", data=b"nothere.mp4")
    assert (missing.status_code, missing.text) == (404, "Error: file not found")
    assert requests.get(f"{service.url}/process_status", params={"filename": "nothere.mp4"}).status_code == 404
    assert requests.post(f"{service.url}/cancel_process", data=b"nothere.mp4").status_code == 404
    health = requests.get(f"{service.url}/health")
    assert (health.status_code, health.json()) == (200, {})
    assert service.db.ProcessingJob.count_documents({"kind": "privacy"}) == 0


def test_a_privacy_file_name_of_a_megabyte_is_400(make_service, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    for name in (b"x" * 1_000_000, b"a" * 300 + b".mp4"):
        answer = requests.post(f"{service.url}/process_video", data=name)
        assert (answer.status_code, answer.text) == (400, "Error: invalid file name")


def test_key_required_when_configured(make_service, tmp_path):
    videos = tmp_path / "videos"
    make_face_clip(videos / "k.mp4", frames=4, audio=False)
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos), PRIVACY_REQUIRE_KEY="true",
                           PRIVACY_API_KEY="privacy-key")
    assert requests.post(f"{service.url}/process_video", data=b"k.mp4").status_code == 401
    assert requests.post(f"{service.url}/process_video", data=b"k.mp4",
                         headers={"X-API-Key": "wrong"}).status_code == 401
    assert requests.get(f"{service.url}/health").status_code == 200  # health stays open
    ok = requests.post(f"{service.url}/process_video", data=b"k.mp4", headers={"X-API-Key": "privacy-key"})
    assert ok.status_code == 202
    status = requests.get(f"{service.url}/process_status", params={"filename": "k.mp4", "format": "json"},
                          headers={"Authorization": "Bearer privacy-key"})
    assert status.status_code == 200 and status.json()["filename"] == "k.mp4"


def test_the_privacy_api_without_a_key_answers_only_loopback(make_service, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    client = service.app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.post("/process_video", data=b"x.mp4", environ_base=remote).status_code == 403
    assert client.get("/process_status?filename=x.mp4", environ_base=remote).status_code == 403
    assert client.get("/health", environ_base=remote).status_code == 200
    assert client.post("/process_video", data=b"x.mp4", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
    opened = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"),
                          PRIVACY_ALLOW_REMOTE_WITHOUT_KEY="true")
    assert opened.app.test_client().post("/process_video", data=b"x.mp4", environ_base=remote).status_code == 404


def test_unknown_files_get_the_old_servers_answers(make_service, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    status = requests.get(f"{service.url}/process_status", params={"filename": "nope.mp4"})
    assert (status.status_code, status.text) == (404, "Process does not exist")
    cancel = requests.post(f"{service.url}/cancel_process", data=b"nope.mp4")
    assert (cancel.status_code, cancel.text) == (404, "Process does not exist in the current runtime")


def test_unreadable_file_fails_cleanly(privacy):
    service, videos = privacy
    (videos / "broken.mp4").write_bytes(b"this is not a video" * 100)
    assert requests.post(f"{service.url}/process_video", data=b"broken.mp4").status_code == 202
    state = wait_done(service.url, "broken.mp4")
    assert state["state"] == "failed" and state["error"].startswith("unreadable_media")
    plain = requests.get(f"{service.url}/process_status", params={"filename": "broken.mp4"})
    assert plain.status_code == 500 and plain.text.startswith("Error: processing failed: unreadable_media")
    assert sorted(p.name for p in videos.iterdir()) == ["broken.mp4"]


def test_a_killed_worker_ends_in_a_finished_job_not_a_stuck_one(make_service, mongo_uri, tmp_path):
    """kill -9 with the temporary output half written (held after its first checkpoint): another
    worker finishes the job in a second attempt. (Cancelling: tests/test_cancel.py.)"""
    videos = tmp_path / "videos"
    make_face_clip(videos / "crash.mp4", frames=120, audio=True)
    api = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(videos))
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=api.settings.mongodb.db_name,
                      PRIVACYPAL_VIDEO_DIRECTORY=str(videos), PRIVACY_DETECT_EVERY="1",
                      JOBS_LEASE_SECONDS="2", JOBS_HEARTBEAT_SECONDS="0.5")
    assert requests.post(f"{api.url}/process_video", data=b"crash.mp4").status_code == 202
    victim = HeldWorker(env, tmp_path / "hold", at=1, when="after")
    try:
        victim.wait_held(api.db, "privacy:crash.mp4")
        assert (videos / "crash-processed-temp.mp4").exists()
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
    finally:
        victim.stop()
    assert requests.get(f"{api.url}/process_status", params={"filename": "crash.mp4"}).text == "False"
    survivor = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = wait_done(api.url, "crash.mp4", timeout=600)  # a state, not a time: CI's cores may be busy
    finally:
        survivor.terminate()
        survivor.wait(30)
    assert state["state"] == "done" and state["attempts"] == 2
    assert sorted(p.name for p in videos.iterdir()) == ["crash-processed.mp4", "crash-processed.regions.json",
                                                        "crash.mp4"]
    with av.open(str(videos / "crash-processed.mp4")) as container:
        assert container.streams.video[0].frames == 120


class FailingOn:
    """A detector that fails on chosen frames and works otherwise. Frames are counted in detection
    calls (the checks of hidden regions, which pass their own threshold, are not counted)."""

    name = "failing"

    def __init__(self, inner, failing_calls: set[int]):
        self.inner, self.failing_calls, self.calls = inner, failing_calls, 0

    def detect(self, rgb, threshold=None):
        if threshold is None:
            self.calls += 1
            if self.calls in self.failing_calls:
                raise DetectorError("simulated failure")
        return self.inner.detect(rgb, threshold)


def settings(**changes) -> BlurSettings:
    base = dict(detect_every=1, detect_width=640, hold_frames=3, pad=1.3, mode="ellipse", cells=8,
                fail_closed="blur_frame", preset="veryfast", crf=20)
    return BlurSettings(**{**base, **changes})


def test_fail_closed_hides_the_whole_frame_or_fails_the_job(tmp_path, strong_detector):
    source = tmp_path / "f.mp4"
    make_face_clip(source, frames=10, audio=False)
    paths = PrivacyOutputs.for_source(source, tmp_path)
    PrivacyPipeline(FailingOn(strong_detector, {4}), settings(max_blacked_out_percent=10), 7680, 4320).run(
        source, paths)
    frames = upright_frames(paths.final)
    assert frames[3].max() < 40  # frame 4: nothing of it is shown
    assert frames[2].std() > 20 and frames[4].std() > 20
    log = json.loads(paths.log_final.read_text())
    assert [r["frame"] for r in log["regions"] if r["origin"] == "fail-closed"] == [4]
    assert log["blacked_out_frames"] == 1

    paths.final.unlink()
    with pytest.raises(DetectorError):
        PrivacyPipeline(FailingOn(strong_detector, {4}), settings(fail_closed="fail_job"), 7680, 4320).run(
            source, paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f-processed.regions.json", "f.mp4"]


def test_too_many_blacked_out_frames_is_not_a_success(tmp_path):
    source = tmp_path / "dark.mp4"
    make_face_clip(source, frames=20, audio=False)
    outputs = PrivacyOutputs.for_source(source, tmp_path)
    with pytest.raises(TooManyBlackedOut):
        PrivacyPipeline(FailingOn(CenterFace(0.2, 2), {3, 4}), settings(max_blacked_out_percent=5), 7680,
                        4320).run(source, outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dark.mp4"]


@pytest.mark.parametrize("mode", ["mosaic", "fill", "box"])
def test_other_blur_modes_hide_the_faces(tmp_path, strong_detector, mode):
    source = tmp_path / "m.mp4"
    scene = make_face_clip(source, frames=12, audio=False)
    paths = PrivacyOutputs.for_source(source, tmp_path)
    PrivacyPipeline(CenterFace(0.2, 2), settings(mode=mode, detect_every=3), 7680, 4320).run(source, paths)
    assert_faces_hidden(scene, upright_frames(source), upright_frames(paths.final), strong_detector,
                        smooth=mode != "mosaic")


@pytest.mark.parametrize("size", [40, 180, 500])
def test_a_large_region_is_blurred_as_a_full_size_gaussian_would(size):
    """The blur smooths on a coarse grid (a full-size kernel a third of the face wide took 267 ms
    for 500 px); the picture must stay what the full-size Gaussian gives."""
    rng = np.random.default_rng(size)
    plane = cv2.GaussianBlur(rng.integers(0, 256, (size, size), dtype=np.uint8), (0, 0), 3)
    reference = plane.copy()
    cells = 3
    small = cv2.resize(reference, (cells, cells), interpolation=cv2.INTER_AREA)
    reference = cv2.GaussianBlur(cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR), (0, 0),
                                 sigmaX=size / cells / 2)
    blur.hide_regions([plane], [(0, 0, size, size)], "box", cells)
    assert np.abs(plane.astype(int) - reference.astype(int)).max() <= 3


def test_a_face_left_visible_by_the_blur_is_hidden_harder(tmp_path):
    judge = CenterFace(threshold=0.3, threads=2)
    source = tmp_path / "weak.mp4"
    make_face_clip(source, frames=12, audio=False)
    outputs = PrivacyOutputs.for_source(source, tmp_path)
    # A blur far too weak to hide anything on its own: 48 cells across a face.
    PrivacyPipeline(CenterFace(0.2, 2), settings(cells=48, detect_every=2), 7680, 4320).run(source, outputs)
    log = json.loads(outputs.log_final.read_text())
    assert log["hidden_harder"] + log["filled"] > 0
    assert {r.get("check") for r in log["regions"]} >= {"hidden harder"} or log["filled"]
    for frame in upright_frames(outputs.final):
        assert judge.detect(np.ascontiguousarray(frame[:, :, ::-1])) == []


def test_the_default_blur_leaves_nothing_a_detector_sees_at_0_3(make_service, tmp_path):
    videos = tmp_path / "videos"
    make_face_clip(videos / "d.mp4", frames=30, size=(640, 360), audio=False)
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos))
    assert requests.post(f"{service.url}/process_video", data=b"d.mp4").status_code == 202
    assert wait_done(service.url, "d.mp4")["state"] == "done"
    judge = CenterFace(threshold=0.3, threads=2)
    for number, frame in enumerate(upright_frames(videos / "d-processed.mp4"), 1):
        assert judge.detect(np.ascontiguousarray(frame[:, :, ::-1])) == [], number


def test_audio_the_mp4_cannot_hold_is_reencoded(tmp_path):
    silent = tmp_path / "silent.mov"
    make_face_clip(silent, frames=25, audio=False)
    source = tmp_path / "pcm.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(silent), "-f", "lavfi", "-i", "sine=frequency=300:duration=1",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", str(source)], check=True)
    paths = PrivacyOutputs.for_source(source, tmp_path)
    PrivacyPipeline(CenterFace(0.2, 2), settings(detect_every=5), 7680, 4320).run(source, paths)
    audio = ffprobe_stream(paths.final, "a:0")
    assert audio["codec_name"] == "aac" and 0.9 < float(audio["duration"]) < 1.2


def test_rekognition_back_end_over_its_http_protocol(make_service, tmp_path, strong_detector):
    stand_in = RekognitionStandIn(face_detector=CenterFace(threshold=0.2, threads=2))
    videos = tmp_path / "videos"
    scene = make_face_clip(videos / "rk.mp4", frames=12, audio=False)
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos), PRIVACY_DETECTOR="rekognition",
                           PRIVACY_REKOGNITION_ENDPOINT_URL=stand_in.url, S3_ACCESS_KEY_ID="AKIDEXAMPLE",
                           S3_SECRET_ACCESS_KEY="secret", PRIVACY_DETECT_EVERY="3")
    try:
        assert requests.post(f"{service.url}/process_video", data=b"rk.mp4").status_code == 202
        assert wait_done(service.url, "rk.mp4")["state"] == "done"
    finally:
        stand_in.close()
    assert stand_in.requests and all(r["target"] == "RekognitionService.DetectFaces" for r in stand_in.requests)
    assert all(r["auth"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") for r in stand_in.requests)
    output = videos / "rk-processed.mp4"
    assert_faces_hidden(scene, upright_frames(videos / "rk.mp4"), upright_frames(output), strong_detector)
    assert json.loads((videos / "rk-processed.regions.json").read_text())["detector"] == "rekognition"


def test_a_detector_outage_is_retried_not_blacked_out(make_service, tmp_path):
    stand_in = RekognitionStandIn(face_detector=CenterFace(threshold=0.2, threads=2))
    stand_in.throttle = 4  # throttled past botocore's retries (2 attempts a call), twice
    videos = tmp_path / "videos"
    make_face_clip(videos / "out.mp4", frames=8, audio=False)
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos), PRIVACY_DETECTOR="rekognition",
                           PRIVACY_REKOGNITION_ENDPOINT_URL=stand_in.url, S3_ACCESS_KEY_ID="AKIDEXAMPLE",
                           S3_SECRET_ACCESS_KEY="secret", REKOGNITION_MAX_ATTEMPTS="2",
                           JOBS_RETRY_BACKOFF_SECONDS="0.2", PRIVACY_DETECT_EVERY="2")
    try:
        assert requests.post(f"{service.url}/process_video", data=b"out.mp4").status_code == 202
        state = wait_done(service.url, "out.mp4")
    finally:
        stand_in.close()
    job = service.db.ProcessingJob.find_one({"_id": "privacy:out.mp4"})
    assert state["state"] == "done" and job["attempts"] >= 2  # the outage cost attempts, not frames
    assert "ThrottlingException" in job["history"][0]["error"]
    assert state["result"]["blacked_out_frames"] == 0
    log = json.loads((videos / "out-processed.regions.json").read_text())
    assert log["blacked_out_frames"] == 0 and not [r for r in log["regions"] if r["origin"] == "fail-closed"]


def test_odd_size_and_variable_frame_rate_keep_their_geometry_and_timestamps(tmp_path):
    times = [0, 0.04, 0.2, 0.24, 0.5, 0.52, 0.9, 1.0, 1.04, 1.5] + [1.5 + 0.04 * i for i in range(1, 11)]
    cases = [("odd.mp4", (321, 241), None), ("vfr.mp4", (320, 240), times)]
    for name, size, frame_times in cases:
        scene = FaceScene(20, *size)
        source = make_video(tmp_path / name, 20, 25, size=size, times=frame_times,
                            render=lambda number, w, h: scene.render(number))
        paths = PrivacyOutputs.for_source(source, tmp_path)
        PrivacyPipeline(CenterFace(0.2, 2), settings(detect_every=2), 7680, 4320).run(source, paths)
        video = ffprobe_stream(paths.final)
        assert video["pix_fmt"] == "yuv420p" and int(video["nb_read_frames"]) == 20
        # yuv420p needs even sizes: an odd edge grows by one pixel, nothing is cut off.
        assert (video["width"], video["height"]) == (size[0] + size[0] % 2, size[1] + size[1] % 2)
        with av.open(str(source)) as before, av.open(str(paths.final)) as after:
            assert ([float(f.time) for f in before.decode(video=0)] ==
                    [float(f.time) for f in after.decode(video=0)])


def test_separate_output_directory(make_service, tmp_path):
    inbox, outbox = tmp_path / "in", tmp_path / "out" / "blurred"  # the output folder does not exist yet
    make_face_clip(inbox / "sep.mp4", frames=4, audio=False)
    service = make_service(PRIVACYPAL_INPUT_VIDEO_DIR=str(inbox), PRIVACYPAL_OUTPUT_VIDEO_DIR=str(outbox))
    assert requests.post(f"{service.url}/process_video", params={"filename": "sep.mp4"}).status_code == 202
    assert wait_done(service.url, "sep.mp4")["state"] == "done"
    assert sorted(p.name for p in outbox.iterdir()) == ["sep-processed.mp4", "sep-processed.regions.json"]
    assert sorted(p.name for p in inbox.iterdir()) == ["sep.mp4"]
