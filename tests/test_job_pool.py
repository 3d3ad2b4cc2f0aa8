"""The worker pool's decisions (retry, backoff, give up, per-kind limits, cancel, shutdown) against
its job store on a real mongod, in this process: handlers that do exactly what a test needs, and
every assertion on the ProcessingJob document the pool wrote. (The kill -9 tests in test_jobs.py
cover what only another process can show.)"""
from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest

from media_service.config import load_settings
from media_service.errors import MediaError, StorageError
from media_service.worker_pool import WorkerPool
from mongo_manager import Job, connect
from tests.conftest import drop_database, service_env
from tests.helpers import ENDED, wait_for


class Handler:
    """A job kind whose run is `behaviour(ctx)`; it records what the pool told it."""

    def __init__(self, kind: str, behaviour):
        self.kind, self.behaviour = kind, behaviour
        self.failed: list[tuple[str, bool]] = []
        self.cancelled: list[str] = []

    def label(self, job):
        return job.id

    def run(self, ctx):
        self.behaviour(ctx)

    def on_failed(self, job, error, final):
        self.failed.append((getattr(error, "code", type(error).__name__), final))

    def on_cancelled(self, job):
        self.cancelled.append(job.id)


@pytest.fixture
def make_pool(tmp_path, mongo_uri):
    made = []

    def make(handlers, threads: int = 2, **env):
        settings = load_settings(service_env(tmp_path, mongo_uri, **env))
        mongo = connect(mongo_uri, settings.mongodb.db_name)
        pool = WorkerPool(mongo, settings, handlers, threads=threads)
        made.append((pool, mongo, settings.mongodb.db_name))
        return pool, mongo.jobs

    yield make
    for pool, mongo, name in made:
        pool.shutdown(grace=5)
        mongo.close()
        drop_database(mongo_uri, name)


def new_id(kind: str) -> str:
    return f"{kind}:{uuid.uuid4().hex[:8]}"


def start_with_one_job(pool, store, kind: str, max_attempts: int) -> str:
    job_id = new_id(kind)
    store.enqueue(job_id, kind, "k", {}, max_attempts=max_attempts)
    pool.start()
    return job_id


def wait_ended(store, job_id) -> Job:
    return wait_for(lambda: (job := store.get(job_id)) and job.state in ENDED and job, 30, what=f"{job_id} to end")


def test_a_transient_error_is_retried_until_the_job_succeeds(make_pool):
    def flaky(ctx):
        if ctx.job.attempts < 3:
            raise ConnectionResetError(f"attempt {ctx.job.attempts} lost its connection")

    handler = Handler("flaky", flaky)
    pool, store = make_pool([handler])
    job_id = start_with_one_job(pool, store, "flaky", max_attempts=3)
    job = wait_ended(store, job_id)
    assert (job.state, job.attempts, job.last_error) == ("done", 3, None)
    assert [entry["error"] for entry in job.history] == [f"attempt {n} lost its connection" for n in (1, 2)]
    assert handler.failed == [("ConnectionResetError", False)] * 2


def test_the_backoff_doubles_with_each_attempt(make_pool):
    handler = Handler("flaky", lambda ctx: (_ for _ in ()).throw(StorageError("S3 answered 503")))
    pool, store = make_pool([handler], JOBS_RETRY_BACKOFF_SECONDS="40")
    job_id = start_with_one_job(pool, store, "flaky", max_attempts=5)
    waits = []
    for attempt in (1, 2):
        job = wait_for(lambda: (job := store.get(job_id)).stage == "retry_wait"
                       and len(job.history) == attempt and job, 30, what=f"failed attempt {attempt} to wait")
        entry = job.history[-1]
        waits.append((entry["retry_at"] - entry["failed_at"]).total_seconds())
        assert job.state == "queued" and job.last_error == "storage_unavailable: S3 answered 503"
        store.make_due_now([job_id])  # the test does not wait out the backoff
        pool.notify()
    assert waits == [pytest.approx(40, abs=0.01), pytest.approx(80, abs=0.01)]


def test_a_permanent_error_fails_the_job_at_once_with_its_code(make_pool):
    def bad_media(ctx):
        raise MediaError("no_video_stream", "clip.mp4 has no video stream")

    handler = Handler("media", bad_media)
    pool, store = make_pool([handler])
    job_id = start_with_one_job(pool, store, "media", max_attempts=3)
    job = wait_ended(store, job_id)
    assert (job.state, job.attempts) == ("failed", 1)
    assert job.last_error == "no_video_stream: clip.mp4 has no video stream"
    assert handler.failed == [("no_video_stream", True)]


def test_a_transient_error_fails_the_job_after_max_attempts(make_pool):
    def always(ctx):
        raise TimeoutError("the detector did not answer")

    handler = Handler("slow", always)
    pool, store = make_pool([handler])
    job_id = start_with_one_job(pool, store, "slow", max_attempts=2)
    job = wait_ended(store, job_id)
    assert (job.state, job.attempts, job.last_error) == ("failed", 2, "the detector did not answer")
    assert handler.failed == [("TimeoutError", False), ("TimeoutError", True)]


def test_a_job_whose_workers_kept_dying_gives_up_with_too_many_attempts(make_pool):
    runs = []
    handler = Handler("dies", runs.append)
    pool, store = make_pool([handler])
    job_id = new_id("dies")
    store.enqueue(job_id, "dies", "k", {}, max_attempts=2)
    # Two workers claimed it and died holding it: its lease has expired, and a claim is attempt 3.
    store.collection.update_one({"_id": job_id}, {"$set": {
        "state": "running", "attempts": 2, "lease_owner": "dead-host:1:0",
        "lease_expires": store.get(job_id).created_at - timedelta(seconds=1)}})
    pool.start()
    job = wait_ended(store, job_id)
    assert job.state == "failed" and job.last_error.startswith("too_many_attempts: gave up after 2 attempts")
    assert runs == [] and handler.failed == [("too_many_attempts", True)]


def test_a_kind_never_runs_more_jobs_than_its_limit_and_the_others_keep_moving(make_pool):
    release = threading.Event()
    running = []
    slow = Handler("slow", lambda ctx: (running.append(ctx.job.id), release.wait(30)))
    quick = Handler("quick", lambda ctx: None)
    pool, store = make_pool([slow, quick], threads=3, JOBS_LIMITS="slow: 1")
    first, second, other = new_id("slow"), new_id("slow"), new_id("quick")
    store.enqueue(first, "slow", "1", {}, max_attempts=1)
    store.enqueue(second, "slow", "2", {}, max_attempts=1)
    store.enqueue(other, "quick", "3", {}, max_attempts=1)
    pool.start()
    wait_for(lambda: running == [first] and store.get(other).state == "done", 30,
             what="one slow job and the quick")
    # Two threads are free, yet the second slow job waits for the first: the limit is one.
    for _ in range(10):
        pool.notify()
        time.sleep(0.05)
        assert store.get(second).state == "queued"
    release.set()
    wait_for(lambda: store.get(second).state == "done", 30, what="the second slow job to be done")
    assert running == [first, second]


def test_a_cancel_request_stops_the_job_at_its_next_check(make_pool):
    started = threading.Event()

    def until_cancelled(ctx):
        started.set()
        while True:
            ctx.checkpoint({"at": 1}, "working", 10.0)  # where a worker in any process learns of it
            ctx.check()
            time.sleep(0.02)

    handler = Handler("long", until_cancelled)
    pool, store = make_pool([handler])
    job_id = start_with_one_job(pool, store, "long", max_attempts=1)
    assert started.wait(30)
    store.request_cancel(job_id)
    job = wait_ended(store, job_id)
    assert (job.state, job.last_error) == ("cancelled", "cancelled on request")
    assert handler.cancelled == [job_id] and handler.failed == []


@pytest.mark.parametrize("reaches_a_boundary, grace", [(True, 10), (False, 0.5)], ids=["at_a_boundary", "after_grace"])
def test_shutdown_hands_a_running_job_back_without_counting_the_attempt(make_pool, reaches_a_boundary, grace):
    """At its next commit boundary; or, when it reaches none, once the grace period is over."""
    started, release = threading.Event(), threading.Event()

    def run(ctx):
        ctx.checkpoint({"next_task": 1}, "tasks", 20.0)
        started.set()
        while not release.is_set():
            if reaches_a_boundary:
                ctx.at_commit_boundary()
            time.sleep(0.02)

    pool, store = make_pool([Handler("tasks", run)])
    job_id = start_with_one_job(pool, store, "tasks", max_attempts=3)
    assert started.wait(30)
    pool.shutdown(grace=grace)
    job = store.get(job_id)
    release.set()
    assert (job.state, job.stage, job.attempts, job.lease_owner) == ("queued", "released", 0, None)
    assert job.checkpoint == {"next_task": 1}


def test_a_new_run_of_an_ended_job_keeps_the_ended_run_as_its_own_record(make_pool):
    """Issue 33: a job id is the resume and idempotency key (`content:<uploadId>`), so a new run of an
    ended job takes it over; the ended run is kept first as `<id>@run<n>`, a record nothing runs or
    retries. Written before the new run replaces it and under a fixed id, so an enqueue that crashed
    between the two leaves nothing twice when the request comes again."""
    _, store = make_pool({})
    job_id = new_id("content")
    store.enqueue(job_id, "content", "k", {"n": 1}, max_attempts=3)
    assert store.enqueue(job_id, "annotation", "k", {"n": 2}, max_attempts=3)[0] is False  # queued: no new run
    store.collection.update_one({"_id": job_id}, {"$set": {"state": "done", "holding": False, "result": {"t": 2}}})
    ended = store.collection.find_one({"_id": job_id})
    store.collection.insert_one({**ended, "_id": f"{job_id}@run1", "superseded_by": job_id})  # the crash's half
    created, job = store.enqueue(job_id, "annotation", "k", {"n": 2}, max_attempts=3)
    assert created and (job.kind, job.state, job.params, job.run) == ("annotation", "queued", {"n": 2}, 2)
    records = list(store.collection.find({"superseded_by": job_id}))
    assert [(r["_id"], r["kind"], r["state"], r["result"], r["holding"]) for r in records] == [
        (f"{job_id}@run1", "content", "done", {"t": 2}, False)]
    assert store.retry(f"{job_id}@run1", ("done", "failed")) is None  # a record is never run again
    assert store.claim("w", 5, ["content", "annotation"], job_id=f"{job_id}@run1") is None
    store.collection.update_one({"_id": job_id}, {"$set": {"state": "failed", "holding": False}})
    assert store.enqueue(job_id, "content", "k", {"n": 3}, max_attempts=3)[0]
    assert sorted(r["_id"] for r in store.collection.find({"superseded_by": job_id})) == [f"{job_id}@run1",
                                                                                          f"{job_id}@run2"]
    assert {row.id for row in store.list()} == {job_id, f"{job_id}@run2", f"{job_id}@run1"}
    store.collection.update_one({"_id": job_id}, {"$set": {"state": "done", "holding": False}})
    assert store.delete_ended(job_id)  # the try-it retention forgets a job with its records
    assert store.collection.count_documents({}) == 0
