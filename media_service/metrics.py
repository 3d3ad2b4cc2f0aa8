"""Prometheus metrics, one view over every process of the service on a data folder.

Each process (gunicorn's web workers, `worker.py`, `python app.py`) writes its counters and
histograms into `<data_dir>/metrics/` (prometheus_client's multiprocess mode); `/metrics` merges
them. Job numbers (jobs by kind and state, queue depth, the oldest queued job's age) are read from
MongoDB at scrape time, so they are right whichever process or host runs the jobs.

`setup(settings)` must run before the first metric is touched (Services.open does it); until then,
and in processes that never call it, recording is a no-op.

CPU seconds by stage (`cpu_stages`, `lap`, `cpu_stage`, `cpu_seconds`) are a tally of this process
only, for the benches (`bench/bench_dataset.py`); they are not exported to Prometheus.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

_metrics: dict[str, object] = {}
DURATION_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 150, 300, 900, 1800, 3600)
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def setup(settings) -> None:
    """Point prometheus_client's multiprocess mode at this data folder and create the metrics."""
    if _metrics:
        return
    folder = Path(settings.app.data_dir).expanduser().resolve() / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(folder))
    _forget_dead_processes(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    from prometheus_client import Counter, Histogram

    _metrics.update(
        http_requests=Counter("media_http_requests", "HTTP requests answered", ["route", "method", "status"]),
        http_seconds=Histogram("media_http_request_seconds", "HTTP request latency", ["route"],
                               buckets=LATENCY_BUCKETS),
        stage_seconds=Histogram("media_job_stage_seconds", "How long a stage of a job took", ["kind", "stage"],
                                buckets=DURATION_BUCKETS),
        jobs_ended=Counter("media_jobs_ended", "Job attempts that ended, by outcome", ["kind", "outcome"]),
        frames=Counter("media_frames", "Frames through a stage (rate() is frames per second)", ["stage"]),
        detector_seconds=Histogram("media_detector_seconds", "Detector latency per frame", ["detector"],
                                   buckets=LATENCY_BUCKETS),
        storage_errors=Counter("media_storage_errors", "Storage operations that failed", ["operation"]),
        mongodb_errors=Counter("media_mongodb_errors", "MongoDB calls that failed (unreachable or timed out)",
                               ["where"]),
    )


def _forget_dead_processes(folder: Path) -> None:
    """Files of processes that are gone: their gauges would linger (counters stay, summed)."""
    from prometheus_client import multiprocess

    for path in folder.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            multiprocess.mark_process_dead(int(pid), str(folder))


def count(name: str, amount: float = 1, **labels: str) -> None:
    metric = _metrics.get(name)
    if metric is not None:
        metric.labels(**labels).inc(amount)


def observe(name: str, value: float, **labels: str) -> None:
    metric = _metrics.get(name)
    if metric is not None:
        metric.labels(**labels).observe(value)


@contextmanager
def timed(name: str, **labels: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        observe(name, time.perf_counter() - started, **labels)


# -- CPU seconds by stage, this process only (the benches read them) ------------------------------
_cpu: dict[tuple[str, str], float] = {}
_cpu_lock = threading.Lock()
_thread = threading.local()


def _add_cpu(kind: str, seconds_by_stage: dict[str, float]) -> None:
    with _cpu_lock:
        for stage, seconds in seconds_by_stage.items():
            _cpu[kind, stage] = _cpu.get((kind, stage), 0.0) + seconds


@contextmanager
def cpu_stages(kind: str) -> Iterator[None]:
    """Within it, each `lap(stage)` of the calling thread charges that thread's CPU seconds since its
    previous lap (or the start) to `stage`; they are added to the tally of `kind` at the end."""
    outer = getattr(_thread, "clock", None)
    seconds: dict[str, float] = {}
    _thread.clock = (seconds, [time.thread_time()])
    try:
        yield
    finally:
        _thread.clock = outer
        _add_cpu(kind, seconds)


def lap(stage: str) -> None:
    """Charge the calling thread's CPU seconds since its last lap to `stage` (outside `cpu_stages`: nothing)."""
    clock = getattr(_thread, "clock", None)
    if clock is None:
        return
    seconds, last = clock
    now = time.thread_time()
    seconds[stage] = seconds.get(stage, 0.0) + now - last[0]
    last[0] = now


@contextmanager
def cpu_stage(kind: str, stage: str) -> Iterator[None]:
    """The whole process's CPU seconds within it charged to `stage` (for work spread over a pool)."""
    started = time.process_time()
    try:
        yield
    finally:
        _add_cpu(kind, {stage: time.process_time() - started})


def cpu_seconds(kind: str) -> dict[str, float]:
    """This process's CPU seconds of `kind` so far, by stage."""
    with _cpu_lock:
        return {stage: seconds for (of, stage), seconds in _cpu.items() if of == kind}


def exposition(mongo) -> tuple[bytes, str]:
    """The text format of every process's metrics plus the job numbers from MongoDB."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector

    class Jobs:
        def collect(self):
            by_state = GaugeMetricFamily("media_jobs", "Jobs by kind and state", labels=["kind", "state"])
            depth = GaugeMetricFamily("media_queue_depth", "Jobs waiting to run", labels=["kind"])
            oldest = GaugeMetricFamily("media_queue_oldest_seconds", "Age of the oldest job waiting",
                                       labels=["kind"])
            summary = mongo.jobs.summary()
            for (kind, state), number in sorted(summary["states"].items()):
                by_state.add_metric([kind, state], number)
            for kind, (number, age) in sorted(summary["queued"].items()):
                depth.add_metric([kind], number)
                oldest.add_metric([kind], age)
            yield from (by_state, depth, oldest)

    registry = CollectorRegistry()
    if _metrics:
        MultiProcessCollector(registry)
    registry.register(Jobs())
    return generate_latest(registry), CONTENT_TYPE_LATEST
