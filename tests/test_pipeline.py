"""Video to annotation tasks, end to end: HTTP request → worker → storage + MongoDB (issue 3)."""
from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from bson import ObjectId

from tests.conftest import SHARED_MEDIA
from tests.helpers import fields_for, new_upload, post, post_node, upload_doc, wait_for_upload
from tests.media import (
    decode_frames,
    expected_samples,
    ffmpeg_frame,
    ffprobe_frames,
    ffprobe_stream,
    make_video,
    moov_before_mdat,
    psnr,
    read_number,
    render_frame,
)

TASK_FIELDS = {
    "projectId": ObjectId, "uploadId": ObjectId, "taskName": str, "videoName": str, "frameStart": int,
    "frameEnd": int, "frameStartTime": float, "frameCount": int, "original_frames": list, "frameRate": int,
    "Originalframerate": float, "skipFrameCount": float, "videoResolutionWidth": int,
    "videoResolutionHeight": int, "videoDuration": str, "videoPath": str, "S3_url": str, "status": int,
    "auditStatus": int, "taskStatus": int, "completedFrames": int, "AutoAnnotationVersion": int,
    "datasetVersions": list,
}


def process(service, source: Path, frame_rate: int = 5, timeout: float = 120, per_task: int = 120, **overrides):
    """Put `source` in the content folder, send Node's request (Node set `per_task` as the upload
    doc's frames_per_task), wait; returns (upload, tasks)."""
    relative = f"./uploads/{source.name}"
    target = service.content / "uploads" / source.name
    if source != target:
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    upload_id, project_id = new_upload(service.db, relative, frame_rate, frames_per_task=per_task)
    response = post_node(f"{service.url}/api/processContent",
                         fields_for(upload_id, project_id, relative, frame_rate=frame_rate, **overrides))
    assert response.status_code == 202, response.text
    upload = wait_for_upload(service.db, upload_id, timeout)
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
    return upload, tasks


def stored_file(service, key: str) -> Path:
    return Path(service.settings.storage.url) / key


def check_tasks(service, upload, tasks, expected_frames: list[int], rate: int, size: tuple[int, int],
                reference=None, per_task: int = 120, min_psnr: float = 30):
    """Every contract field, every stored video, and every frame against its source frame."""
    assert upload["status"] == 1, upload.get("errorMessage")
    assert upload["progress"] == 100 and upload["taskCount"] == len(tasks)
    assert upload["finishedAt"] is not None and upload["nodeOwnedField"] == "keep me"
    assert [t["taskName"] for t in tasks] == [f"task-{i}-{tasks[0]['videoName']}" for i in range(len(tasks))]
    assert [n for t in tasks for n in t["original_frames"]] == expected_frames
    for index, task in enumerate(tasks):
        for name, kind in TASK_FIELDS.items():
            assert isinstance(task[name], kind), (name, task[name])
        frames = task["original_frames"]
        assert len(frames) == task["frameCount"] == (per_task if index < len(tasks) - 1 else len(frames))
        assert task["frameStart"] == frames[0] and task["frameEnd"] == frames[-1]
        assert (task["videoResolutionWidth"], task["videoResolutionHeight"]) == size
        assert task["frameRate"] == rate
        assert task["S3_url"] == f"contents/{task['projectId']}/{task['taskName']}/{task['taskName']}.mp4"
        video = stored_file(service, task["S3_url"])
        info = ffprobe_stream(video)
        assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
        assert (info["width"], info["height"]) == size and size[0] % 2 == 0 and size[1] % 2 == 0
        assert Fraction(info["r_frame_rate"]) == rate and Fraction(info["avg_frame_rate"]) == rate
        assert int(info["nb_read_frames"]) == len(frames)
        assert moov_before_mdat(video)
        frame_docs = list(service.db.AnnotationFrame.find({"taskId": task["_id"]}).sort("frameId", 1))
        assert [f["frameId"] for f in frame_docs] == list(range(1, len(frames) + 1))
        assert all(f["boxes"] == [] and f["isEmpty"] is True and f["commentBoxes"] == [] and f["status"] == 0
                   and f["datasetVersions"] == [] for f in frame_docs)
        for number, picture in zip(frames, decode_frames(video)):
            if reference is None:
                assert read_number(picture) == number
                expected = render_frame(number, *size)
            else:
                expected = reference(number)
            assert psnr(picture, expected) > min_psnr, (task["taskName"], number)


@pytest.mark.parametrize("name,fps,frames,rate", [
    ("ntsc-film.mp4", Fraction(24000, 1001), 75, 5),
    ("ntsc-video.mp4", Fraction(30000, 1001), 70, 7),
    ("at-source.mp4", 10, 25, 10),  # every frame; a rate above the source's is refused (test_api.py)
])
def test_constant_frame_rates(service, tmp_path, name, fps, frames, rate):
    clip = make_video(tmp_path / name, frames, fps)
    upload, tasks = process(service, clip, rate)
    expected = expected_samples(clip, rate)
    if rate >= fps:
        assert expected == list(range(1, frames + 1))
    check_tasks(service, upload, tasks, expected, rate, (320, 240))
    assert tasks[0]["Originalframerate"] == pytest.approx(float(fps), rel=1e-3)
    assert tasks[0]["skipFrameCount"] == pytest.approx(float(fps) / rate, rel=1e-3)


def test_several_tasks_and_progress(service, tmp_path):
    clip = make_video(tmp_path / "multi.task.clip.mp4", 100, 25)
    upload, tasks = process(service, clip, 5, per_task=8)
    assert len(tasks) == 3 and [t["frameCount"] for t in tasks] == [8, 8, 4]
    assert tasks[0]["videoName"] == "multi.task.clip"  # dots inside the name are kept
    check_tasks(service, upload, tasks, expected_samples(clip, 5), 5, (320, 240), per_task=8)
    assert tasks[1]["frameStartTime"] == pytest.approx((tasks[1]["frameStart"] - 1) / 25)
    project = service.db.AnnotationProject.find_one({"_id": upload["projectId"]})
    assert project["contentUploads"] == [upload["_id"]]


@pytest.mark.parametrize("on_doc,expected", [(20, 20), (None, 120), ("abc", 120), (0, 120)])
def test_tasks_are_cut_by_the_frames_per_task_node_set(service, on_doc, expected):
    make_video(service.content / "fpt.mp4", 150, 25)
    upload_id, project_id = new_upload(service.db, "./fpt.mp4")
    service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {"frames_per_task": on_doc}}
                                                  if on_doc is not None else {"$unset": {"frames_per_task": ""}})
    assert post(service, fields_for(upload_id, project_id, "./fpt.mp4", frame_rate=25)).status_code == 202
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    counts = [t["frameCount"] for t in service.db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart")]
    assert counts[0] == min(expected, 150) and sum(counts) == 150
    assert upload_doc(service, upload_id)["frames_per_task"] == expected


def test_created_at_and_source_path_are_set_when_the_run_starts_not_when_it_is_queued(make_service, tmp_path):
    """Node's UI marks an upload timed out three hours after its createdAt (CONTRACT §2): the old
    service reset it, and sourceFilePath, when processing began."""
    from datetime import timedelta

    from mongo_manager import utcnow

    service = make_service(APP_RUN_WORKERS="false")  # queued only, until a worker starts
    clip = make_video(service.content / "uploads" / "late.mp4", 10, 25)
    upload_id, project_id = new_upload(service.db, "./uploads/late.mp4")
    long_ago = utcnow() - timedelta(hours=5)
    service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {
        "createdAt": long_ago, "sourceFilePath": "./contents/uploads/elsewhere.mp4"}})
    response = post_node(f"{service.url}/api/processContent", fields_for(upload_id, project_id, "./uploads/late.mp4"))
    assert response.status_code == 202
    assert service.db.AnnotationContentUpload.find_one({"_id": upload_id})["createdAt"] == long_ago
    worker = make_service(MONGODB_DB_NAME=service.settings.mongodb.db_name)
    upload = wait_for_upload(worker.db, upload_id)
    job = worker.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert upload["status"] == 1 and clip.exists()
    assert job["created_at"] < job["started_at"] <= upload["createdAt"] <= upload["finishedAt"]
    assert upload["sourceFilePath"] == "./uploads/late.mp4"


def test_shared_clip_big_buck_bunny(service):
    source = SHARED_MEDIA / "bbb-720p-25fps.mp4"
    upload, tasks = process(service, source, 5, per_task=10)
    expected = expected_samples(source, 5)
    assert len(expected) == 27 and len(tasks) == 3
    check_tasks(service, upload, tasks, expected, 5, (1280, 720), per_task=10,
                reference=lambda n: ffmpeg_frame(source, n))


def test_variable_frame_rate(service, tmp_path):
    times = [0, 0.03, 0.05, 0.3, 0.31, 0.7, 0.71, 0.72, 1.5, 1.6, 1.61, 2.4, 2.45, 2.9]
    clip = make_video(tmp_path / "vfr.mp4", len(times), 25, times=times)
    upload, tasks = process(service, clip, 5)
    expected = expected_samples(clip, 5)
    assert expected == [1, 4, 6, 9, 10, 12, 14]
    check_tasks(service, upload, tasks, expected, 5, (320, 240))


def test_rotated_video_is_turned_upright(service, tmp_path):
    clip = make_video(tmp_path / "rotated.mp4", 12, 25, rotation=90)
    upload, tasks = process(service, clip, 25)
    check_tasks(service, upload, tasks, list(range(1, 13)), 25, (240, 320),
                reference=lambda n: ffmpeg_frame(clip, n))


def test_odd_size_is_padded_to_even(service, tmp_path):
    clip = make_video(tmp_path / "odd.mp4", 10, 10, size=(161, 121))
    upload, tasks = process(service, clip, 10)

    def reference(n):  # the source frame with one replicated column and row
        return cv2.copyMakeBorder(ffmpeg_frame(clip, n), 0, 1, 0, 1, cv2.BORDER_REPLICATE)
    # The odd-size source is 4:4:4; 4:2:0 halves its chroma, which costs a few dB on this pattern.
    check_tasks(service, upload, tasks, list(range(1, 11)), 10, (162, 122), reference=reference, min_psnr=27)


def test_task_max_height_downscales(make_service, tmp_path):
    service = make_service(CONTENT_TASK_MAX_HEIGHT="120")
    clip = make_video(tmp_path / "big.mp4", 10, 10)
    upload, tasks = process(service, clip, 10)
    check_tasks(service, upload, tasks, list(range(1, 11)), 10, (160, 120),
                reference=lambda n: cv2.resize(render_frame(n, 320, 240), (160, 120), interpolation=cv2.INTER_AREA),
                min_psnr=27)  # FFmpeg's scaler and OpenCV's differ slightly on hard edges


@pytest.mark.parametrize("frames,fps,rate,expected", [(1, 25, 5, [1]), (3, 25, 1, [1])])
def test_tiny_clips(service, tmp_path, frames, fps, rate, expected):
    clip = make_video(tmp_path / f"tiny{frames}.mp4", frames, fps)
    upload, tasks = process(service, clip, rate)
    check_tasks(service, upload, tasks, expected, rate, (320, 240))


def test_no_audio_and_audio_both_work(service, tmp_path):
    clip = make_video(tmp_path / "with-audio.mp4", 20, 10, audio=True)
    upload, tasks = process(service, clip, 5)
    check_tasks(service, upload, tasks, expected_samples(clip, 5), 5, (320, 240))


def test_corrupt_tail_keeps_the_frames_that_decode(make_service, tmp_path):
    """Accepted within a tolerance that allows it, the damage is recorded, and exactly the frames
    that decode (by the ffmpeg CLI, independently) are sampled."""
    service = make_service(CONTENT_MAX_LOST_FRAMES_PERCENT="50")
    clip = make_video(tmp_path / "tail.mkv", 60, 25)
    data = bytearray(clip.read_bytes())
    cut = len(data) * 2 // 3
    data[cut:] = bytes((i * 97) % 256 for i in range(len(data) - cut))
    clip.write_bytes(bytes(data))
    upload, tasks = process(service, clip, 5)
    assert upload["status"] == 1
    decodable = len(ffprobe_frames(clip)[0])
    assert 0 < decodable < 60 and upload["framesExpected"] == 60
    # Frames skipped on purpose (never decoded) count as seen: the damaged one may be among them.
    assert upload["framesDecoded"] - decodable in (0, 1)
    kept = [n for t in tasks for n in t["original_frames"]]
    assert kept == expected_samples(clip, 5)
    for task in tasks:
        for number, picture in zip(task["original_frames"], decode_frames(stored_file(service, task["S3_url"]))):
            assert read_number(picture) == number


def test_a_source_truncated_while_it_is_read_fails_instead_of_a_partial_success(make_service, mongo_uri, tmp_path):
    from tests.conftest import service_env
    from tests.held_worker import HeldWorker

    service = make_service(APP_RUN_WORKERS="false")
    clip = make_video(service.content / "shrinks.mp4", 600, 25, size=(480, 360))
    upload_id, project_id = new_upload(service.db, "./shrinks.mp4", frames_per_task=3)
    assert post(service, fields_for(upload_id, project_id, "./shrinks.mp4", frame_rate=25)).status_code == 202
    env = service_env(tmp_path, mongo_uri, MONGODB_DB_NAME=service.settings.mongodb.db_name,
                      STORAGE_URL=service.settings.storage.url)
    worker = HeldWorker(env, tmp_path / "hold", at=3, when="after")  # 2 of its 200 tasks committed
    try:
        worker.wait_held(service.db, f"content:{upload_id}")
        os.truncate(clip, clip.stat().st_size // 3)  # overwritten in place while the worker reads it
        worker.release()
        upload = wait_for_upload(service.db, upload_id)
    finally:
        worker.stop()
    assert upload["status"] == 2 and upload["errorMessage"]["message"].startswith("source_changed")
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0


def _damage_middle(path: Path) -> None:
    """Garbage over a stretch in the middle of the file (its size and the probe's count unchanged)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    data[start:start + len(data) // 5] = bytes((i * 131) % 256 for i in range(len(data) // 5))
    path.write_bytes(bytes(data))


def test_frames_lost_in_decoding_fail_beyond_the_tolerance_and_are_recorded_within_it(make_service):
    strict = make_service()
    clip = make_video(strict.content / "damaged.mkv", 120, 25)
    _damage_middle(clip)
    upload_id, project_id = new_upload(strict.db, "./damaged.mkv")
    assert post(strict, fields_for(upload_id, project_id, "./damaged.mkv")).status_code == 202
    upload = wait_for_upload(strict.db, upload_id)
    assert upload["status"] == 2 and upload["errorMessage"]["message"].startswith("frames_lost"), upload
    lenient = make_service(CONTENT_MAX_LOST_FRAMES_PERCENT="90")
    upload_id, project_id = new_upload(lenient.db, "./damaged.mkv")
    assert post(lenient, fields_for(upload_id, project_id, "./damaged.mkv")).status_code == 202
    upload = wait_for_upload(lenient.db, upload_id)
    assert upload["status"] == 1 and upload["framesExpected"] == 120
    assert 0 < upload["framesDecoded"] < 120


@pytest.mark.parametrize("kind,code", [("truncated", "unreadable_media"), ("text", "unreadable_media")])
def test_unusable_files_fail_clearly(service, tmp_path, kind, code):
    path = tmp_path / f"{kind}.mp4"
    if kind == "truncated":
        make_video(tmp_path / "whole.mp4", 50, 25)
        whole = (tmp_path / "whole.mp4").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    else:
        path.write_text("this is not a video\n" * 100)
    upload, tasks = process(service, path, 5)
    assert upload["status"] == 2 and tasks == []
    assert upload["errorMessage"]["error_code"] == 422
    assert code in upload["errorMessage"]["message"]
    assert not list((service.content.parent / "tasks").rglob("*.mp4"))
    assert not Path(service.settings.storage.url, "contents").exists()


@pytest.mark.parametrize("name,ext", [("photo.mp4", ".png"), ("photo.mov", ".jpg")])
def test_a_still_image_named_as_a_video_is_refused_pointing_at_content_type_2(service, name, ext):
    ok, data = cv2.imencode(ext, np.full((120, 160, 3), 90, np.uint8))
    (service.content / name).write_bytes(data.tobytes())
    upload_id, project_id = new_upload(service.db, f"./{name}")
    assert post(service, fields_for(upload_id, project_id, f"./{name}")).status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    message = upload["errorMessage"]["message"]
    assert upload["status"] == 2 and message.startswith("still_image") and "content_type 2" in message


def test_resolution_limit(make_service, tmp_path):
    service = make_service(CONTENT_MAX_WIDTH="300")
    upload, tasks = process(service, make_video(tmp_path / "wide.mp4", 5, 25), 5)
    assert upload["status"] == 2 and "resolution_too_large" in upload["errorMessage"]["message"]


def test_force_write_replaces_earlier_tasks(service, tmp_path):
    clip = make_video(tmp_path / "again.mp4", 50, 25)
    first, old_tasks = process(service, clip, 5, per_task=5)
    assert len(old_tasks) == 2
    old_ids = [t["_id"] for t in old_tasks]
    # Same video again, fewer frames per second: fewer tasks. force_write 0 is refused...
    upload_id, project_id = new_upload(service.db, "./uploads/again.mp4", frames_per_task=5)
    service.db.AnnotationTask.update_many({"_id": {"$in": old_ids}}, {"$set": {"projectId": project_id}})
    refused = post_node(f"{service.url}/api/processContent", fields_for(upload_id, project_id, "./uploads/again.mp4"))
    assert refused.status_code == 409
    doc = service.db.AnnotationContentUpload.find_one({"_id": upload_id})
    assert doc["status"] == 2 and doc["errorMessage"]["error_code"] == 200
    # ...force_write 1 replaces: old docs, frames and objects go.
    response = post_node(f"{service.url}/api/processContent",
                         fields_for(upload_id, project_id, "./uploads/again.mp4", force_write=1, frame_rate=2))
    assert response.status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 1
    tasks = list(service.db.AnnotationTask.find({"projectId": project_id}))
    assert len(tasks) == 1 and service.db.AnnotationTask.count_documents({"_id": {"$in": old_ids}}) == 0
    assert service.db.AnnotationFrame.count_documents({"taskId": {"$in": old_ids}}) == 0
    stored = sorted(p.name for p in Path(service.settings.storage.url).rglob("*.mp4"))
    assert stored == ["task-0-again.mp4"] and service.db.AnnotationFrame.count_documents({}) == 4


def test_source_deleted_only_when_configured_and_successful(make_service, tmp_path):
    service = make_service(CONTENT_DELETE_SOURCE="true")
    ok, _ = process(service, make_video(tmp_path / "delete-me.mp4", 10, 25), 5)
    assert ok["status"] == 1 and not (service.content / "uploads" / "delete-me.mp4").exists()
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    failed, _ = process(service, bad, 5)
    assert failed["status"] == 2 and (service.content / "uploads" / "bad.mp4").exists()


def _photo(path: Path, size, orientation: int | None = None, number: int = 1):
    from PIL import Image
    image = Image.fromarray(cv2.cvtColor(render_frame(number, *size), cv2.COLOR_BGR2RGB))
    exif = image.getexif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif)


def test_image_folder_becomes_tasks(service, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "img1.jpg", (320, 240), number=1)
    _photo(folder / "img2.jpg", (240, 160), number=2)
    _photo(folder / "img10.jpg", (320, 240), orientation=6, number=10)  # shown rotated: 240x320
    (folder / "img3.jpg").write_bytes(b"broken")
    upload, tasks = process(service, folder, 2, per_task=2, content_type=2)
    assert upload["status"] == 1, upload.get("errorMessage")
    assert upload["skippedImages"][0]["fileName"] == "img3.jpg"
    assert [t["original_frames"] for t in tasks] == [[1, 2], [4]]  # natural order: 1, 2, 3, 10
    assert all((t["videoResolutionWidth"], t["videoResolutionHeight"]) == (320, 320) for t in tasks)
    placements = tasks[0]["imageFrames"] + tasks[1]["imageFrames"]
    assert [p["fileName"] for p in placements] == ["img1.jpg", "img2.jpg", "img10.jpg"]
    assert (placements[2]["originalWidth"], placements[2]["originalHeight"]) == (240, 320)  # EXIF applied
    assert placements[0] == {"frameId": 1, "fileName": "img1.jpg", "originalWidth": 320, "originalHeight": 240,
                             "x": 0, "y": 40, "w": 320, "h": 240}
    pictures = decode_frames(stored_file(service, tasks[0]["S3_url"]))
    assert read_number(pictures[0][40:280]) == 1
    rotated = decode_frames(stored_file(service, tasks[1]["S3_url"]))[0]
    expected = np.rot90(render_frame(10, 320, 240), k=-1)  # orientation 6 = turn 90° clockwise
    assert psnr(rotated[:, 40:280], expected) > 28


def test_image_zip(service, tmp_path):
    import zipfile
    folder = tmp_path / "zsrc"
    folder.mkdir()
    for n in (1, 2, 3):
        _photo(folder / f"{n}.png", (160, 120), number=n)
    archive = tmp_path / "shots.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for n in (1, 2, 3):
            handle.write(folder / f"{n}.png", f"batch/{n}.png")
        handle.writestr("batch/notes.txt", "ignored")
    upload, tasks = process(service, archive, 1, content_type=2)
    assert upload["status"] == 1 and tasks[0]["videoName"] == "shots"
    pictures = decode_frames(stored_file(service, tasks[0]["S3_url"]))
    assert [read_number(p) for p in pictures] == [1, 2, 3]
    assert min(psnr(p, render_frame(n, 160, 120)) for n, p in zip((1, 2, 3), pictures)) > 28


# (CAP_PROP_FPS, rate, frames) -> the old service's frame numbers, worked out by hand from its rule
# (issue 17 item 8): a multiple -> every round(fps / rate)-th; otherwise steps of int(fps / rate),
# plus one frame for each multiple of round(fps) / (round(fps) % rate) the step passed over.
LEGACY_TABLE = [
    (30, 5, 40, [6, 12, 18, 24, 30, 36]),
    (25, 5, 30, [5, 10, 15, 20, 25, 30]),
    (29.97, 5, 20, [6, 12, 18]),
    (24, 5, 40, [4, 9, 14, 19, 23, 28, 33, 38]),           # the example; multiples of 6 add one
    (23.976, 5, 30, [4, 9, 14, 19, 23, 28]),
    (29.97, 7, 40, [4, 8, 12, 17, 21, 25, 29, 34, 38]),    # multiples of 15 add one
    (25, 1, 60, [25, 50]),
    (10, 30, 4, [1, 2, 3, 4]),                             # asked for more than the source has
]


@pytest.mark.parametrize("fps,rate,frames,expected", LEGACY_TABLE)
def test_legacy_sampling_picks_the_old_services_frame_numbers(fps, rate, frames, expected):
    import video_processor as vp

    sampler = vp.Sampler(rate, "legacy", fps)
    assert [n for n in range(1, frames + 1) if sampler.keep(n, Fraction(0))] == expected
    assert vp.Sampler(rate, "legacy", fps).count(frames) == len(expected)


def test_legacy_sampling_mode_end_to_end(make_service, tmp_path):
    service = make_service(CONTENT_SAMPLING_MODE="legacy")
    clip = make_video(tmp_path / "legacy.mp4", 40, 24)
    upload, tasks = process(service, clip, 5, per_task=3)
    check_tasks(service, upload, tasks, [4, 9, 14, 19, 23, 28, 33, 38], 5, (320, 240), per_task=3)
    assert [4, 9, 14, 19, 23, 28, 33, 38] != expected_samples(clip, 5)  # really a different rule


def test_unsampled_b_frames_are_not_decoded_yet_numbers_and_resume_are_exact(tmp_path):
    """Frames the sampler will not keep and nothing refers to are skipped by the decoder (counted:
    fewer frames come out of the decoder than the clip has); the frame numbers still count them, a
    resumed decode continues exactly, and the pixels match."""
    import av

    import video_processor as vp

    clip = make_video(tmp_path / "b.mp4", 120, 30, size=(320, 240))  # libx264 veryfast: B-frames
    info = vp.probe_video(clip, 9999, 9999)
    with av.open(str(clip)) as container:
        time_base = container.streams.video[0].time_base
    skippable = vp.frames_to_skip(info, vp.Sampler(5, "timestamp", info.average_fps), time_base, None)
    assert len(skippable) == 100  # 20 of 120 frames are kept at 5 fps

    def run(resume=None, sampler=None, stats=None):
        sampler = sampler or vp.Sampler(5, "timestamp", info.average_fps)
        return [(s.number, point) for s, point in vp.decode_samples(clip, sampler, info, resume, stats)
                if read_number(s.frame.to_ndarray(format="bgr24")) == s.number]

    stats = vp.DecodeStats()
    full = run(stats=stats)
    assert [n for n, _ in full] == expected_samples(clip, 5) == list(range(1, 121, 6))
    # Every frame was seen; the decoder really produced fewer (each kept one among them).
    assert stats.frames_seen == 120 and 20 <= stats.frames_decoded < 110
    middle = full[8][1]  # as a checkpoint after the 9th sample
    resumed = run(middle, vp.Sampler(5, "timestamp", info.average_fps, middle.next_sample))
    assert [n for n, _ in resumed] == [n for n, _ in full[9:]]


def test_the_task_video_check_finds_what_a_browser_would_trip_on(tmp_path):
    """The container-level check (packets, codec, format, size, rate, moov first, both ends decode)."""
    import subprocess

    import video_processor as vp

    good = tmp_path / "good.mp4"
    encoder = vp.TaskEncoder(good, (320, 240), 5, "veryfast", 23)
    for number in range(1, 13):
        encoder.add(vp.frame_from_bgr(render_frame(number, 320, 240)))
    encoder.close()
    assert vp.check_task_video(good).problems(12, (320, 240), 5) == []
    assert vp.check_task_video(good).problems(13, (320, 240), 5) == ["frames 12 (planned 13)"]
    assert vp.check_task_video(good).problems(12, (322, 240), 4) == ["size (320, 240) (planned (322, 240))",
                                                                     "rate 5 (planned 4)"]
    moov_last = tmp_path / "moov-last.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(good), "-c", "copy", str(moov_last)], check=True)
    assert vp.check_task_video(moov_last).problems(12, (320, 240), 5) == ["moov before mdat False (planned True)"]
    yuv444 = tmp_path / "444.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(good), "-c:v", "libx264", "-pix_fmt", "yuv444p", "-r", "5",
                    "-movflags", "+faststart", str(yuv444)], check=True)
    assert vp.check_task_video(yuv444).problems(12, (320, 240), 5) == ["pixel format yuv444p (planned yuv420p)"]


def test_references_loopback_stored_as_hex_strings_are_matched_and_keep_their_form(service, tmp_path):
    """LoopBack may store a reference as an ObjectId or as its 24-hex string (issue 17 item 10)."""
    make_video(service.content / "uploads" / "hex.mp4", 20, 25)
    upload_id, project_id, earlier = ObjectId(), ObjectId(), ObjectId()
    service.db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": [str(earlier)]})
    service.db.AnnotationContentUpload.insert_one({
        "_id": upload_id, "projectId": str(project_id), "sourceFilePath": "./uploads/hex.mp4", "status": 0,
        "progress": 0, "frame_rate": 5, "frames_per_task": 120})
    answer = post_node(f"{service.url}/api/processContent", fields_for(upload_id, project_id, "./uploads/hex.mp4"))
    assert answer.status_code == 202, answer.text
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    project = service.db.AnnotationProject.find_one({"_id": project_id})
    assert project["contentUploads"] == [str(earlier), str(upload_id)]  # the list's own form, once

    # A task an earlier service wrote with string references still counts as the video's task.
    service.db.AnnotationTask.update_many({"uploadId": upload_id}, {"$set": {"projectId": str(project_id),
                                                                             "uploadId": str(upload_id)}})
    again = ObjectId()
    service.db.AnnotationContentUpload.insert_one({"_id": again, "projectId": project_id, "status": 0,
                                                   "sourceFilePath": "./uploads/hex.mp4"})
    refused = post_node(f"{service.url}/api/processContent", fields_for(again, project_id, "./uploads/hex.mp4"))
    assert refused.status_code == 409 and "already has tasks" in refused.json()["message"]
