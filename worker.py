"""A worker process without HTTP: claims jobs from MongoDB and runs them (`python worker.py`).

gunicorn.conf.py starts one beside the gevent web workers, so CPU work never runs on gevent's
event loop; more can run on other hosts against the same MongoDB and storage.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from media_service.bootstrap import bootstrap

log = logging.getLogger("worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="worker threads (default: [Cores] cpu_cores)")
    args = parser.parse_args()
    started = bootstrap()
    settings, services = started.settings, started.services
    services.start_workers(args.threads)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Wake now and then: a signal delivered to another thread (a decoder's, x264's) only runs its
    # Python handler once the main thread runs again, so a wait without timeout could miss SIGTERM.
    while not stop.wait(0.5):
        pass
    log.info("stopping: running jobs stop at their next commit (up to %.0fs)", settings.jobs.shutdown_grace_seconds)
    services.close()


if __name__ == "__main__":
    main()
