"""A three-member MongoDB replica set for the tests, from the same mongod wheel as the single
server (`media_service.embedded_mongo.ReplicaSet`): one per session, started on first use, members
on 127.0.0.1 on free ports, stopped at the end. A test may kill, restart or step down members; it
leaves the set with three members up and a primary (`healthy`)."""
from __future__ import annotations

import time

import pytest

import mongo_manager
from media_service.embedded_mongo import ReplicaSet

# MongoDB's default is 10 s; 3 s keeps the suite fast. The service's default lease (60 s, renewed
# every 10 s) outlasts the default; the tests' 10 s lease outlasts this one the same way.
ELECTION_TIMEOUT_MS = 3000


@pytest.fixture(scope="session")
def replica_set(tmp_path_factory):
    members = ReplicaSet(tmp_path_factory.mktemp("replica-set"), mongo_manager.member_command,
                         election_timeout_ms=ELECTION_TIMEOUT_MS)
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
            status = mongo_manager.member_command(members.hosts[members.wait_for_primary()], "replSetGetStatus")
            if all(m["stateStr"] in ("PRIMARY", "SECONDARY") for m in status["members"]):
                return
        except Exception:  # noqa: BLE001 - an election under way: ask again
            pass
        time.sleep(0.1)
    raise AssertionError(f"the replica set did not recover in {timeout}s")
