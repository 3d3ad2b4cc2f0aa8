"""Durable background jobs: a bounded pool of real OS threads claiming work from MongoDB.

A job is claimed atomically with a lease that a heartbeat renews; a worker that dies stops
renewing, and once the lease expires any worker (in any process, on any host) claims the job
again and resumes it from its last checkpoint. A failure that says retrying cannot help (a
permanent `ServiceError`) fails the job at once; any other retries with backoff up to
`max_attempts`. Either way the job's handler records a final error a person can act on.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from media_service import metrics
from media_service.errors import GaveUp, ServiceError, is_permanent
from media_service.logging_setup import job_context, set_log_fields
from media_service.mongo import Job, JobStore, LeaseLost, MongoManager, is_unavailable
from media_service.redact import Redactor

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    pass


class JobReleased(Exception):
    """The service is shutting down; the job was handed back at a commit boundary."""


class JobWaiting(Exception):
    """The job waits for other jobs (its parts): queued again, due after `seconds` or as soon as one
    of them ends; the attempt does not count."""

    def __init__(self, seconds: float, stage: str):
        super().__init__(stage)
        self.seconds, self.stage = seconds, stage


class Checkpoint:
    """A job kind's resume point, typed: a dataclass that reads itself from the stored `checkpoint`
    (`from_doc`, under the field names runs before it wrote) and writes itself back (`to_doc`),
    saved through the job's context so that each save is a commit boundary."""

    @classmethod
    def from_doc(cls, doc: dict):
        raise NotImplementedError

    def to_doc(self) -> dict:
        raise NotImplementedError

    @classmethod
    def load(cls, ctx: "JobContext"):
        """The resume point the job's run starts from (the kind's fresh one when there is none)."""
        return cls.from_doc(ctx.job.checkpoint)

    def save(self, ctx: "JobContext", stage: str, progress: float) -> None:
        ctx.checkpoint(self.to_doc(), stage, progress)


class JobHandler(Protocol):
    kind: str
    def label(self, job: Job) -> str: ...
    def run(self, ctx: "JobContext") -> None: ...
    def on_failed(self, job: Job, error: Exception, final: bool) -> None: ...
    def on_cancelled(self, job: Job) -> None: ...


@dataclass
class JobContext:
    """What a running job sees of the machinery: cheap checks and checkpoints."""
    job: Job
    owner: str
    store: JobStore
    lease_seconds: float
    stopping: threading.Event
    lost: threading.Event
    cancel: threading.Event
    started: float = field(default_factory=time.monotonic)   # this attempt's start and progress: the ETA
    progress_at_start: float = 0.0                             # comes from the rate since then
    eta_seconds: float | None = None
    stage: str | None = None
    stage_started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(self.job.id)
        if self.cancel.is_set():
            raise JobCancelled(self.job.id)

    def stop_if_cancel_requested(self) -> None:
        """A last look at the database before the job publishes its end (an upload's status 1, a
        finished dataset): a cancel that came after the last commit stops it before Node sees it."""
        self.check()
        if self.store.cancel_requested(self.job.id):
            self.cancel.set()
            raise JobCancelled(self.job.id)

    def at_commit_boundary(self) -> None:
        self.check()
        if self.stopping.is_set():
            raise JobReleased(self.job.id)

    def checkpoint(self, checkpoint: dict, stage: str, progress: float) -> None:
        """Save the resume point and progress (0-100) with an ETA from this attempt's measured rate."""
        self._enter_stage(stage)
        self.eta_seconds = self._eta(progress)
        if self.store.save_checkpoint(self.job.id, self.owner, checkpoint, stage, progress, self.eta_seconds):
            self.cancel.set()  # the next check() stops the job
        self.job.checkpoint = checkpoint

    def progress(self, stage: str, progress: float) -> None:
        """Progress (0-100) and its ETA within a commit, with no new resume point (a batch of frames
        done); a cancel asked meanwhile stops the job at its next check()."""
        self._enter_stage(stage)
        self.eta_seconds = self._eta(progress)
        if self.store.save_progress(self.job.id, self.owner, stage, progress, self.eta_seconds):
            self.cancel.set()

    def _eta(self, progress: float) -> float | None:
        done, elapsed = progress - self.progress_at_start, time.monotonic() - self.started
        if done <= 0 or elapsed < 0.5:
            return None
        return round(elapsed * (100.0 - progress) / done, 1)

    def set_stage(self, stage: str) -> None:
        self._enter_stage(stage)
        self.store.set_stage(self.job.id, self.owner, stage)

    def _enter_stage(self, stage: str | None) -> None:
        """Time the stage that ends here (media_job_stage_seconds) and name the new one in the logs."""
        now = time.monotonic()
        if stage != self.stage:
            if self.stage is not None:
                metrics.observe("stage_seconds", now - self.stage_started, kind=self.job.kind, stage=self.stage)
            self.stage, self.stage_started = stage, now
            set_log_fields(stage=stage)

    def report(self, result: dict) -> None:
        """What the run produced (counts a status page shows), kept on the job."""
        self.store.set_result(self.job.id, self.owner, result)


class _Heartbeat(threading.Thread):
    """Renews one job's lease until stopped; flags a lost lease or a cancel request. When renewals
    fail for as long as the lease lasts (the database is down), the lease may have passed to another
    worker: the job stops as if it were lost, so two workers never write at once."""

    def __init__(self, ctx: JobContext, interval: float):
        super().__init__(name=f"heartbeat-{ctx.job.id}", daemon=True)
        self.ctx, self.interval, self.done = ctx, interval, threading.Event()

    def run(self) -> None:
        renewed = time.monotonic()
        while not self.done.wait(self.interval):
            try:
                job = self.ctx.store.renew_lease(self.ctx.job.id, self.ctx.owner, self.ctx.lease_seconds)
                renewed = time.monotonic()
                if job.cancel_requested:
                    self.ctx.cancel.set()
            except LeaseLost:
                log.warning("lease on %s lost; stopping it", self.ctx.job.id)
                self.ctx.lost.set()
                return
            except Exception as exc:  # a database hiccup: the lease still has time, try again
                log.warning("lease renewal of %s failed: %s", self.ctx.job.id, exc)
                if time.monotonic() - renewed >= self.ctx.lease_seconds:
                    log.warning("lease on %s expired while the database was unreachable; stopping it",
                                self.ctx.job.id)
                    self.ctx.lost.set()
                    return


class WorkerPool:
    def __init__(self, mongo: MongoManager, settings, handlers: list[JobHandler], threads: int | None = None):
        self.store = mongo.jobs
        self.settings = settings
        self.handlers = {h.kind: h for h in handlers}
        self.size = threads or settings.cores.worker_threads
        self.owner_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.redact = Redactor.from_settings(settings)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, JobContext] = {}
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self.limits = dict(settings.jobs.limits)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._loop, args=(f"{self.owner_prefix}:{i}",),
                                      name=f"worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker pool started: %d threads, owner %s", self.size, self.owner_prefix)

    def alive(self) -> int:
        """Worker threads running now (readiness fails when fewer than `size`)."""
        return sum(thread.is_alive() for thread in self._threads)

    def notify(self) -> None:
        """A job was just queued: look now rather than at the next poll."""
        self.wake.set()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop claiming; running jobs stop at their next commit (or are abandoned after `grace`)."""
        grace = self.settings.jobs.shutdown_grace_seconds if grace is None else grace
        self.stopping.set()
        self.wake.set()
        deadline = threading.Event()
        timer = threading.Timer(grace, deadline.set)
        timer.start()
        for thread in self._threads:
            while thread.is_alive() and not deadline.is_set():
                thread.join(0.1)
        timer.cancel()
        with self._lock:
            leftover = list(self._running.values())
        for ctx in leftover:  # still mid-task after the grace period: hand the job back now
            ctx.lost.set()
            if self.store.release(ctx.job.id, ctx.owner):
                log.info("released %s after the grace period", ctx.job.id)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self, owner: str) -> None:
        """Never ends before shutdown: whatever one job does to the database or the handler, the
        thread goes on. A job left running by such an error keeps its lease until it expires, and is
        then claimed again (resumed from its checkpoint, or failed after max_attempts)."""
        _lower_thread_priority(self.settings.jobs.worker_nice)
        while not self.stopping.is_set():
            try:
                ctx = self._claim(owner)
            except Exception as exc:
                metrics.count("mongodb_errors", where="worker")
                log.warning("claiming failed: %s", self.redact.text(str(exc)))
                self.stopping.wait(self.settings.jobs.poll_seconds)
                continue
            if ctx is None:
                self.wake.wait(self.settings.jobs.poll_seconds)
                self.wake.clear()
                continue
            try:
                self.run_claimed(ctx)
            except Exception as exc:
                log.error("job %s could not be closed (%s); its lease will expire and it will be claimed again",
                          ctx.job.id, self.redact.text(_describe(exc)))
                self.stopping.wait(self.settings.jobs.poll_seconds)

    def claim(self, job_id: str) -> JobContext | None:
        """Take this one job for a caller that runs it itself (`run_claimed`): dataset_processor.py.
        None when it is not due, or another worker holds it."""
        return self._claim(f"{self.owner_prefix}:cli", job_id)

    def _claim(self, owner: str, job_id: str | None = None) -> JobContext | None:
        """The oldest due job of a kind this process runs fewer of than its limit ([Jobs] limits):
        a long job of one kind never takes every thread, so the other kinds keep moving. Claims are
        made one at a time, so the counts hold."""
        with self._claim_lock:
            with self._lock:
                running = [ctx.job.kind for ctx in self._running.values()]
            kinds = [kind for kind in self.handlers if running.count(kind) < self.limits.get(kind, self.size)]
            if job_id is None and not kinds:
                return None
            job = self.store.claim(owner, self.settings.jobs.lease_seconds, kinds, job_id=job_id)
            if job is None:
                return None
            ctx = JobContext(job, owner, self.store, self.settings.jobs.lease_seconds, self.stopping,
                             threading.Event(), threading.Event(), progress_at_start=job.progress)
            with self._lock:
                self._running[job.id] = ctx
            return ctx

    def run_claimed(self, ctx: JobContext) -> None:
        job = ctx.job
        handler = self.handlers[job.kind]
        if job.cancel_requested:
            ctx.cancel.set()
        heartbeat = _Heartbeat(ctx, self.settings.jobs.heartbeat_seconds)
        heartbeat.start()
        about = {name: str(job.params[name]) for name in ("upload_id", "request_type", "version_id", "filename")
                 if name in job.params}
        try:
            with job_context(handler.label(job), job_id=job.id, kind=job.kind, **about):
                self._execute(handler, ctx)
        finally:
            ctx._enter_stage(None)
            heartbeat.done.set()
            heartbeat.join()
            with self._lock:
                self._running.pop(job.id, None)

    def _execute(self, handler: JobHandler, ctx: JobContext) -> None:
        job, owner = ctx.job, ctx.owner
        if job.attempts > job.max_attempts:
            error = GaveUp(f"gave up after {job.max_attempts} attempts; "
                                   f"last error: {job.last_error or 'the worker stopped unexpectedly'}")
            return self._fail(handler, ctx, error)
        log.info("job %s started (attempt %d/%d, stage %s)", job.id, job.attempts, job.max_attempts,
                 job.stage)
        try:
            ctx.check()
            self._through_failovers(ctx, lambda: handler.run(ctx), resume=True)
        except JobCancelled:
            self._cancel(handler, ctx)
        except JobWaiting as waiting:
            self.store.wait(job.id, owner, waiting.seconds, waiting.stage)
            log.info("job %s waits: %s", job.id, waiting.stage)
        except JobReleased:
            metrics.count("jobs_ended", kind=job.kind, outcome="released")
            self.store.release(job.id, owner)
            log.info("job %s handed back for shutdown at a commit boundary", job.id)
        except LeaseLost:
            metrics.count("jobs_ended", kind=job.kind, outcome="lease_lost")
            log.warning("job %s: lease lost, another worker continues it", job.id)
        except Exception as exc:
            if is_permanent(exc) or job.attempts >= job.max_attempts:
                return self._fail(handler, ctx, exc)
            delay = self.settings.jobs.retry_backoff_seconds * 2 ** (job.attempts - 1)
            error = self.redact.text(_describe(exc))
            log.warning("job %s failed (attempt %d/%d), retrying in %.0fs: %s", job.id, job.attempts,
                        job.max_attempts, delay, error, exc_info=not isinstance(exc, OSError))
            metrics.count("jobs_ended", kind=job.kind, outcome="retry")
            handler.on_failed(job, exc, final=False)
            self.store.retry_later(job.id, owner, error, delay)
        else:
            if self._through_failovers(ctx, lambda: self.store.finish(job.id, owner, "done")):
                metrics.count("jobs_ended", kind=job.kind, outcome="done")
                log.info("job %s done", job.id)
            elif self.store.cancel_requested(job.id):
                # Asked to cancel after its last commit: the request was answered "stopping", so
                # what the run made is removed as at any other point.
                self._cancel(handler, ctx)
            else:
                metrics.count("jobs_ended", kind=job.kind, outcome="lease_lost")
                log.warning("job %s: finished, but another worker holds it now", job.id)

    def _cancel(self, handler: JobHandler, ctx: JobContext) -> None:
        metrics.count("jobs_ended", kind=ctx.job.kind, outcome="cancelled")
        handler.on_cancelled(ctx.job)
        self.store.finish(ctx.job.id, ctx.owner, "cancelled", "cancelled on request")
        log.info("job %s cancelled; its outputs were removed", ctx.job.id)

    def _through_failovers(self, ctx: JobContext, step, resume: bool = False):
        """Run `step` (the job, or the write that closes it) through a replica set's election.

        While no primary exists (one was killed or stepped down: MongoDB's electionTimeoutMillis is
        10 s by default) every write fails, and pymongo retries a write only once. That is no fault of
        the job: it waits here, its heartbeat keeps the lease (60 s by default, longer than an
        election), and once a primary answers it goes on in the same attempt, from the checkpoint the
        database holds (`resume`): each commit is idempotent, so one cut short is simply made again.
        It stops waiting when the lease is lost (the outage outlasted it) or the pool shuts down."""
        while True:
            try:
                return step()
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                log.warning("job %s: the database is unavailable (%s); going on when a primary answers",
                            ctx.job.id, self.redact.text(str(exc)))
                metrics.count("mongodb_errors", where="worker")
            job = self._wait_for_primary(ctx, ours=resume)
            if resume:
                ctx.job.checkpoint = job.checkpoint
            elif job is None:
                return False  # the lease ran out while no primary answered: the job is not ours now
            elif job.state == "done":
                return True  # the closing write went through; only its answer was lost

    def _wait_for_primary(self, ctx: JobContext, ours: bool = True) -> Job | None:
        """The job as the primary has it, once one answers; with `ours`, LeaseLost when it is no
        longer this worker's. Without `ours` (the closing write): None once the lease has run out."""
        while True:
            if ours:
                ctx.check()
                if self.stopping.is_set():
                    raise JobReleased(ctx.job.id)
            elif ctx.lost.is_set():
                return None
            self.stopping.wait(self.settings.jobs.poll_seconds)
            try:
                job = self.store.get(ctx.job.id)
            except Exception as exc:
                if database_unavailable(exc):
                    continue
                raise
            if ours and (job is None or job.state != "running" or job.lease_owner != ctx.owner):
                raise LeaseLost(ctx.job.id)
            return job

    def _fail(self, handler: JobHandler, ctx: JobContext, error: Exception) -> None:
        described = self.redact.text(_describe(error))
        log.error("job %s failed: %s", ctx.job.id, described, exc_info=not isinstance(error, ServiceError))
        metrics.count("jobs_ended", kind=ctx.job.kind, outcome="failed")
        handler.on_failed(ctx.job, error, final=True)
        self.store.finish(ctx.job.id, ctx.owner, "failed", described)


def database_unavailable(exc: BaseException) -> bool:
    """No primary answered (or the server is down): this error, or one it was raised from."""
    seen = 0
    while exc is not None and seen < 10:
        if is_unavailable(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _lower_thread_priority(nice: int) -> None:
    """Make this worker thread (and the decoder and encoder threads it starts, which inherit it)
    yield the CPU to request handling: bench/bench_gevent.py measured p99 86 ms under load at
    equal priority. Linux keeps a nice value per thread; elsewhere this does nothing."""
    if nice <= 0 or not hasattr(os, "setpriority") or _green_threads():
        return  # under gevent a "thread" is a greenlet: the native thread is the whole web server
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        log.warning("could not lower the worker threads' priority: %s", exc)


def _green_threads() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    text = str(exc) or type(exc).__name__
    return f"{code}: {text}" if code else text

