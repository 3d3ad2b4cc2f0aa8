"""A three-member MongoDB replica set for the tests (and bench/bench_scale.py), from the same mongod
wheel as the single server: one per session, started on first use, members on 127.0.0.1 on free
ports, stopped at the end. A test may kill, restart or step down members; it leaves the set with
three members up and a primary (`healthy`)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from media_service.embedded_mongo import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    EmbeddedMongoError,
    _die_with_parent,
    _free_port,
    _port_in_use,
    find_mongod,
)

# MongoDB's default is 10 s; 3 s keeps the suite fast. The service's default lease (60 s, renewed
# every 10 s) outlasts the default; the tests' 10 s lease outlasts this one the same way.
ELECTION_TIMEOUT_MS = 3000


@pytest.fixture(scope="session")
def replica_set(tmp_path_factory):
    members = ReplicaSet(tmp_path_factory.mktemp("replica-set"), election_timeout_ms=ELECTION_TIMEOUT_MS)
    members.start()
    yield members
    members.stop()


def healthy(members: ReplicaSet, timeout: float = 120) -> None:
    """Every member up (a killed one started again) and each one PRIMARY or SECONDARY."""
    for member, process in enumerate(members.processes):
        if process is None:
            members.start_member(member)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = member_command(members.hosts[members.wait_for_primary()], "replSetGetStatus")
            if all(m["stateStr"] in ("PRIMARY", "SECONDARY") for m in status["members"]):
                return
        except Exception:  # noqa: BLE001 - an election under way: ask again
            pass
        time.sleep(0.1)
    raise AssertionError(f"the replica set did not recover in {timeout}s")


def member_command(host: str, name: str, value=1, **options) -> dict:
    """An admin command on one server by itself (`host:port`), not through the set: to initiate a
    set, ask who is primary and step one down."""
    with MongoClient(host, directConnection=True, serverSelectionTimeoutMS=5000) as client:
        return client.admin.command(name, value, **options)


class ReplicaSet:
    """A replica set of `members` mongod processes from the same binary, all on 127.0.0.1 (tests and
    bench/: production runs its own set and sets MONGO_URI). Members can be killed, restarted and
    stepped down, to see the service through an election. `election_timeout_ms`: MongoDB's default
    is 10,000; a test may use less to stay fast."""

    def __init__(self, folder: Path, members: int = 3, mongod_path: str = "",
                 cache_gb: float = 0.25, name: str = "rs0", election_timeout_ms: int = 10_000):
        self.folder = Path(folder).resolve()
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
        return member_command(self.hosts[member], command, value, **options)

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
