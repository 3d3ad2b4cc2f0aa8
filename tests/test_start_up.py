"""One start-up (media_service/bootstrap.py): every entry point ends a bad configuration, a bad
argument and an unreachable database with the same exit code and a one-line message (README.md's
table). Each case stops before any real work, so each run takes about a second."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from bson import ObjectId

from media_service.bootstrap import ExitCode
from tests.conftest import ROOT
from tests.helpers import clean_service_env

GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn") if (ROOT / ".venv" / "bin" / "gunicorn").exists() else "gunicorn"
ENTRY_POINTS = {
    "app.py": [sys.executable, "app.py"],
    "worker.py": [sys.executable, "worker.py"],
    "dataset_processor.py": [sys.executable, "dataset_processor.py", "-v", str(ObjectId())],
    "dataset_creation_warm_start.py": [sys.executable, "dataset_creation_warm_start.py"],
    "gunicorn.conf.py": [GUNICORN, "wsgi:app"],
}


def start(command: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = clean_service_env(APP_DATA_DIR=str(tmp_path / "data"), PORT="18097", **env)
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_a_configuration_error_ends_every_entry_point_with_its_code(entry_point, tmp_path):
    result = start(ENTRY_POINTS[entry_point], tmp_path, CONTENT_FRAMES_PER_TASK="lots")
    assert result.returncode == ExitCode.CONFIGURATION == 78, result.stderr[-2000:]
    assert "configuration error" in result.stderr and "[Content] frames_per_task" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_version_id_is_a_bad_argument(tmp_path):
    result = start([sys.executable, "dataset_processor.py", "-v", "not-an-id"], tmp_path)
    assert result.returncode == ExitCode.BAD_ARGUMENT == 2, result.stderr[-2000:]
    assert "error:" in result.stderr and "not-an-id" in result.stderr
    usage = start([sys.executable, "dataset_processor.py"], tmp_path)  # argparse: the same code
    assert usage.returncode == ExitCode.BAD_ARGUMENT and "--version-id" in usage.stderr


def test_an_unreachable_database_has_its_own_code(tmp_path):
    remote = start([sys.executable, "worker.py"], tmp_path, MONGO_URI=f"mongodb://127.0.0.1:{closed_port()}/",
                   MONGODB_TIMEOUT_SECONDS="0.5")
    assert remote.returncode == ExitCode.DATABASE_UNREACHABLE == 69, remote.stderr[-2000:]
    assert "the database cannot be reached" in remote.stderr and "Traceback" not in remote.stderr
    embedded = start(ENTRY_POINTS["gunicorn.conf.py"], tmp_path, MONGODB_MONGOD_PATH=str(tmp_path / "no-mongod"))
    assert embedded.returncode == ExitCode.DATABASE_UNREACHABLE, embedded.stderr[-2000:]
    assert "embedded MongoDB" in embedded.stderr and "no-mongod" in embedded.stderr


def test_the_readme_table_names_every_exit_code():
    readme = (ROOT / "README.md").read_text()
    assert all(f"\n| {int(code)} | " in readme for code in ExitCode)
