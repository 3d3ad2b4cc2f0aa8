"""On a MongoDB replica set (issue 21, item 10): how the service writes and reads there, and four
jobs at once (a content cut, an auto-annotation, a dataset build, a privacy blur) in two worker.py
processes through a kill -9 of the primary and, separately, a replSetStepDown. Each run must end
with exactly the documents and objects of an uninterrupted run on the same inputs (same ids), every
job done in its first attempt (its lease outlived the election), and /api/ready 503 only while the
set has no primary."""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from bson import ObjectId
from pymongo import ReadPreference
from pymongo.errors import ConnectionFailure

import mongo_manager
from tests import helpers
from tests.conftest import NODE_KEY, LiveService, drop_database, service_env
from tests.faces import make_face_clip
from tests.helpers import fields_for, new_upload, post_node, wait_for_upload
from tests.media import make_video
from tests.replica_set import healthy
from tests.test_datasets import AUGMENTATIONS, FRAME_BOXES, LABELS, render_with_object, without_volatile
from tests.test_jobs import frame_numbers, start_worker

COLLECTIONS = ("AnnotationProject", "AnnotationContentUpload", "AnnotationTask", "AnnotationFrame",
               "AnnotationDatasetVersion", "MasterData")
# The same ids in every run, so that two runs' documents and object keys can be compared as they are.
CLIP_UPLOAD, CLIP_PROJECT = ObjectId(), ObjectId()
FACES_PROJECT, TYPE2_UPLOAD = ObjectId(), ObjectId()
VERSION = ObjectId()
LEASE = "10"  # outlasts this set's election (3 s timeout) as the default 60 s outlasts the default 10 s


# -- how the client talks to a replica set ---------------------------------------------------------

def test_writes_wait_for_a_majority_and_the_journal_reads_go_to_the_primary_retries_stay_on(replica_set, mongo_uri):
    """Even when the URI asks otherwise for reads and retries; a URI's own write concern is kept."""
    asked = replica_set.uri + "&readPreference=secondaryPreferred&retryWrites=false&retryReads=false"
    mongo = mongo_manager.connect(asked, "t_" + ObjectId().__str__())
    try:
        assert mongo.db.write_concern.document == {"w": "majority", "j": True}
        assert mongo.db.read_preference == ReadPreference.PRIMARY
        assert mongo.client.options.retry_writes and mongo.client.options.retry_reads
        mongo.ensure_indexes()  # and the server takes them
    finally:
        mongo.close()
    single = mongo_manager.connect(mongo_uri, "t_" + ObjectId().__str__())
    try:  # one server: "majority" is that server; the journal is still waited for
        assert single.db.write_concern.document == {"w": "majority", "j": True}
        single.ensure_indexes()
        single.client.drop_database(single.db.name)
    finally:
        single.close()
    own = mongo_manager.connect(replica_set.uri + "&w=1&journal=false", "t_" + ObjectId().__str__())
    try:
        assert own.db.write_concern.document == {"w": 1, "j": False}
    finally:
        own.close()


def test_a_claim_reads_a_few_index_keys_however_long_the_queue(mongo_uri):
    """bench/bench_scale.py: a claim used to read every queued job (its cancel-request branch had no
    index), which made 50 claimers slower than one. The server's own profile of the real claim."""
    mongo = mongo_manager.connect(mongo_uri, "t_" + ObjectId().__str__())
    try:
        mongo.ensure_indexes()
        for number in range(300):
            mongo.jobs.enqueue(f"noop:{number:03d}", "noop", str(number), {}, 3)
        mongo.db.command("profile", 2)
        assert mongo.jobs.claim("owner", 60, ["noop"]).id == "noop:000"
        mongo.db.command("profile", 0)
        claim = mongo.db["system.profile"].find_one({"command.findAndModify": "ProcessingJob"})
        assert claim["keysExamined"] <= 5 and claim["docsExamined"] <= 5, claim
    finally:
        mongo.client.drop_database(mongo.db.name)
        mongo.close()


# -- the same four jobs, uninterrupted and through an election --------------------------------------

@contextmanager
def running_service(folder: Path, uri: str, **env: str):
    """The real app on a real port (as conftest's make_service), for module-scoped fixtures."""
    from werkzeug.serving import make_server

    from app import create_app
    from media_service.config import load_settings

    server = make_server("127.0.0.1", 0, None, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = load_settings(service_env(folder, uri, APP_PUBLIC_URL=url, **env))
    server.app = create_app(settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield LiveService(url, server.app, settings, folder / "content")
    finally:
        server.shutdown()
        server.app.extensions["media"].close(grace=5)
        drop_database(uri, settings.mongodb.db_name)


@dataclass
class Seed:
    """What Node and earlier runs left before the four jobs: documents, stored objects, media files."""
    docs: dict
    folder: Path


@pytest.fixture(scope="module")
def seed(tmp_path_factory, replica_set) -> Seed:
    folder = tmp_path_factory.mktemp("rs-seed")
    make_video(folder / "content" / "uploads" / "clip.mp4", 250, 25, size=(640, 360))  # content: 25 tasks
    make_face_clip(folder / "videos" / "face.mp4", frames=60, audio=False)  # the privacy job
    with running_service(folder, replica_set.uri) as service:
        db = service.db
        # Tasks of a face clip (auto-annotation re-annotates them) and of the red-object clip (the
        # dataset is built from them), cut by the service itself.
        make_face_clip(service.content / "faces.mp4", frames=30, audio=False)
        db.AnnotationProject.insert_one({"_id": FACES_PROJECT, "contentUploads": [],
                                         "labels": [{"label": "Face", "color": "#00ff00"},
                                                    {"label": "Person", "color": "#ff0000"}]})
        cut = ObjectId()
        db.AnnotationContentUpload.insert_one({"_id": cut, "projectId": FACES_PROJECT, "status": 0,
                                               "frames_per_task": 10})
        make_video(service.content / "object.mp4", 40, 10, size=(320, 240), render=render_with_object)
        objects_upload, objects_project = new_upload(db, "./object.mp4", frame_rate=10, frames_per_task=5)
        for upload, project, path, rate in ((cut, FACES_PROJECT, "./faces.mp4", 25),
                                            (objects_upload, objects_project, "./object.mp4", 10)):
            answer = post_node(f"{service.url}/api/processContent", fields_for(upload, project, path, frame_rate=rate))
            assert answer.status_code == 202, answer.text
        for upload in (cut, objects_upload):
            assert wait_for_upload(db, upload, timeout=300)["status"] == 1
        tasks = list(db.AnnotationTask.find({"uploadId": objects_upload}).sort("frameStart", 1))
        for frame in db.AnnotationFrame.find({"taskId": {"$in": [t["_id"] for t in tasks]}}):
            db.AnnotationFrame.update_one({"_id": frame["_id"]}, {"$set": {
                "boxes": FRAME_BOXES, "isEmpty": False,
                "datasetVersions": [{"versionId": VERSION, "datasetType": 1 if frame["frameId"] <= 3 else 2}]}})
        db.MasterData.insert_one({"exportFormats": {"YOLO": {"category": "Object Detection", "name": "YOLO",
                                                             "fileType": "zip"}}})
        db.AnnotationDatasetVersion.insert_one({
            "_id": VERSION, "dataSetGroupId": ObjectId(), "versionNo": "1.0.0", "augmentationSeed": 1234,
            "taskList": [str(t["_id"]) for t in tasks], "labelAttributeList": LABELS,
            "splitCount": [{"percentage": 70}, {"percentage": 30}, {"percentage": 0}],
            "augmentationTypes": AUGMENTATIONS})
        db.AnnotationProject.insert_one({"_id": CLIP_PROJECT, "contentUploads": []})
        db.AnnotationContentUpload.insert_many([
            {"_id": CLIP_UPLOAD, "projectId": CLIP_PROJECT, "status": 0, "progress": 0, "frames_per_task": 4},
            {"_id": TYPE2_UPLOAD, "projectId": FACES_PROJECT, "status": 0, "progress": 0, "frames_per_task": 10}])
        docs = {name: list(db[name].find()) for name in COLLECTIONS}
    return Seed(docs, folder)


@dataclass
class Run:
    api: LiveService
    worker_env: dict
    folder: Path
    jobs: list[str]


def queue_four_jobs(seed: Seed, folder: Path, uri: str) -> tuple[Run, object]:
    """A fresh database and folders holding the seed, an API without workers, and the four jobs
    queued through the routes Node (and the privacy product) call."""
    for name in ("content", "storage", "videos"):
        shutil.copytree(seed.folder / name, folder / name, dirs_exist_ok=True)
    videos = str(folder / "videos")
    service = running_service(folder, uri, APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=videos)
    api = service.__enter__()
    for name, docs in seed.docs.items():
        api.db[name].insert_many(docs)
    answers = [
        post_node(f"{api.url}/api/processContent", fields_for(CLIP_UPLOAD, CLIP_PROJECT, "./uploads/clip.mp4",
                                                             frame_rate=10)),
        post_node(f"{api.url}/api/processContent", fields_for(TYPE2_UPLOAD, FACES_PROJECT, "./faces.mp4",
                                                             request_type=2, auto_anno_version=1)),
        post_node(f"{api.url}/api/createDataSet", {"data_version_id": str(VERSION), "auth_key": NODE_KEY}),
        requests.post(f"{api.url}/process_video", data=b"face.mp4", timeout=30)]
    assert [a.status_code for a in answers] == [202, 202, 201, 202], [a.text for a in answers]
    jobs = sorted(job["_id"] for job in api.db.ProcessingJob.find({}, {"_id": 1}))
    assert len(jobs) == 4
    # A 1 s server selection in the workers: pymongo's one retry of a write gives up well inside the
    # election (as it does with the defaults, 3 s against 10 s), so the jobs must ride it out.
    # The content upload (25 tasks) is cut in three parts, by either worker.
    env = service_env(folder, uri, MONGODB_DB_NAME=api.settings.mongodb.db_name, PRIVACYPAL_VIDEO_DIRECTORY=videos,
                      JOBS_LEASE_SECONDS=LEASE, JOBS_HEARTBEAT_SECONDS="0.5", MONGODB_TIMEOUT_SECONDS="1",
                      CONTENT_TASKS_PER_PART="10")
    return Run(api, env, folder, jobs), service


def wait_for(condition, timeout: float, what: str):
    """helpers.wait_for, where the test's own reads during an election fail: they ask again."""
    return helpers.wait_for(condition, timeout, 0.05, what, retry_on=(ConnectionFailure,))


def run_jobs(run: Run, fault=None) -> dict:
    """Two worker.py processes run the four jobs (the content one in three parts) to their end. With
    `fault`: once a part and the three other jobs are all claimed (both workers' four threads
    busy), both workers are frozen (SIGSTOP) so that none can finish meanwhile, `fault()` strikes
    the primary, and the workers go on into the election (SIGCONT)."""
    db = run.api.db
    workers = [start_worker(run.worker_env, run.folder / f"worker{i}.log") for i in range(2)]
    try:
        if fault is not None:
            wait_for(lambda: db.ProcessingJob.count_documents({"state": "running"}) == 4
                     and db.ProcessingJob.count_documents({"state": "running", "parent": {"$exists": True}}) >= 1,
                     120, "a part and the other three jobs running")
            for worker in workers:
                worker.send_signal(signal.SIGSTOP)
            running = db.ProcessingJob.count_documents({"state": "running"})
            assert running == 4, list(db.ProcessingJob.find({}, {"state": 1}))
            fault()
            for worker in workers:
                worker.send_signal(signal.SIGCONT)
        wait_for(lambda: db.ProcessingJob.count_documents({}) == 7 and db.ProcessingJob.count_documents(
            {"state": {"$nin": ["done", "failed", "cancelled"]}}) == 0, 300, "all jobs and parts ended")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
            worker.terminate()
            worker.wait(30)
    return snapshot(run)


def stored(folder: Path) -> dict:
    """Every stored object: a task video by the frame numbers it shows (its encoding may differ in
    bits from run to run), anything else by its bytes."""
    root = folder / "storage"
    return {str(path.relative_to(root)): frame_numbers(path) if "clip" in path.name else
            hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.name.startswith(".")}


VOLATILE = {"createdAt", "updatedAt", "finishedAt", "etaSeconds", "videoPath"}


def snapshot(run: Run) -> dict:
    """Every document of the run without ids and times (frames under their task's name), every
    stored object and the privacy outputs."""
    db = run.api.db
    names = {task["_id"]: (str(task["uploadId"]), task["taskName"]) for task in db.AnnotationTask.find()}
    clean = lambda doc, drop=(): without_volatile({k: v for k, v in doc.items() if k not in VOLATILE | set(drop)})  # noqa: E731
    frames = sorted(((names[f["taskId"]], f["frameId"]), clean(f, ("_id", "taskId")))
                    for f in db.AnnotationFrame.find())
    assert len({key for key, _ in frames}) == len(frames), "a frame written twice"
    regions = json.loads((run.folder / "videos" / "face-processed.regions.json").read_text())
    regions.pop("source")
    return {
        "jobs": {job["_id"]: (job["state"], job["attempts"], job.get("last_error")) for job in db.ProcessingJob.find()},
        "uploads": sorted((str(u["_id"]), repr(clean(u))) for u in db.AnnotationContentUpload.find()),
        "projects": sorted(repr(clean(p)) for p in db.AnnotationProject.find()),
        "tasks": sorted((names[t["_id"]], repr(clean(t, ("_id",)))) for t in db.AnnotationTask.find()),
        "frames": [(key, repr(value)) for key, value in frames],
        "version": without_volatile(db.AnnotationDatasetVersion.find_one({"_id": VERSION})),
        "objects": stored(run.folder),
        "privacy": (regions, sorted(p.name for p in (run.folder / "videos").iterdir())),
    }


@pytest.fixture(scope="module")
def reference(seed, replica_set, tmp_path_factory) -> dict:
    """The four jobs on the seed, never interrupted."""
    run, service = queue_four_jobs(seed, tmp_path_factory.mktemp("rs-reference"), replica_set.uri)
    try:
        expected = run_jobs(run)
    finally:
        service.__exit__(None, None, None)
    assert {state for state, _, _ in expected["jobs"].values()} == {"done"}, expected["jobs"]
    return expected


class Readiness(threading.Thread):
    """Asks /api/ready every 100 ms; keeps (asked at, answered at, status) of every answer."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.answers, self.done = url, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            asked = time.monotonic()
            try:
                status = requests.get(f"{self.url}/api/ready", timeout=10).status_code
            except requests.RequestException:
                status = None
            self.answers.append((asked, time.monotonic(), status))


def kill_primary(members, times: dict) -> None:
    primary = members.primary()
    times["fault"] = time.monotonic()
    members.kill(primary)
    times["old"] = primary


def step_down_primary(members, times: dict) -> None:
    primary = members.primary()
    times["fault"] = time.monotonic()
    members.step_down(primary)
    times["old"] = primary


@pytest.mark.parametrize("fault", [kill_primary, step_down_primary], ids=["kill-9", "stepdown"])
def test_four_jobs_in_two_workers_end_as_an_uninterrupted_run_through_an_election(
        seed, reference, replica_set, tmp_path, fault):
    healthy(replica_set)
    run, service = queue_four_jobs(seed, tmp_path, replica_set.uri)
    readiness = Readiness(run.api.url)
    times: dict = {}

    def strike() -> None:
        readiness.start()
        wait_for(lambda: any(status == 200 for *_, status in readiness.answers), 30, "ready before the fault")
        fault(replica_set, times)

    try:
        def watch_election() -> None:  # when a primary other than the struck one is there
            wait_for(lambda: "old" in times, 300, "the fault")
            replica_set.wait_for_primary(other_than=times["old"])
            times["elected"] = time.monotonic()

        elected = threading.Thread(target=watch_election, daemon=True)
        elected.start()
        got = run_jobs(run, strike)
        elected.join(120)
        time.sleep(0.5)
    finally:
        readiness.done.set()
        if readiness.is_alive():
            readiness.join(30)  # its last question answered before the service stops
        service.__exit__(None, None, None)
    assert got == reference
    # A 503 only from the fault until the new primary was known (plus the client's discovery of it).
    assert "elected" in times
    unready = [(asked, status) for asked, _, status in readiness.answers if status != 200]
    assert all(times["fault"] <= asked <= times["elected"] + 3 for asked, _ in unready), (times, unready)
    assert any(status == 200 and asked > times["elected"] for asked, _, status in readiness.answers)
    healthy(replica_set)  # the killed member rejoins (rolling back what only it had), for the next test
