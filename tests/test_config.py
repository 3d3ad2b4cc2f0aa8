"""Configuration: the file, env overrides by one rule, typed validation, secrets (issue 2)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pymongo import MongoClient

from media_service.config import ConfigError, load_settings
from tests.conftest import ROOT
from tests.helpers import fields_for, free_port, new_upload, post_node, wait_for_upload, wait_until_ready
from tests.media import make_video


def test_defaults_from_the_committed_file():
    settings = load_settings({})
    assert settings.port == 8081 and settings.frames_per_task == 120
    assert settings.storage_url == "./data/storage" and settings.api_keys == ()


def test_env_overrides_by_section_and_key():
    settings = load_settings({"CONTENT_FRAMES_PER_TASK": "60", "APP_API_KEY": "a, b", "PORT": "9000",
                              "MONGO_URI": "mongodb://db:27017/x", "STORAGE_URL": "s3://bucket/pre",
                              "JOBS_MAX_ATTEMPTS": "5", "CONTENT_DELETE_SOURCE": "yes"})
    assert settings.frames_per_task == 60 and settings.api_keys == ("a", "b") and settings.port == 9000
    assert settings.mongo_uri == "mongodb://db:27017/x" and settings.storage_url == "s3://bucket/pre"
    assert settings.max_attempts == 5 and settings.delete_source is True


@pytest.mark.parametrize("env,fragment", [
    ({"CONTENT_FRAMES_PER_TASK": "many"}, "[Content] frames_per_task"),
    ({"CONTENT_FRAMES_PER_TASK": "0"}, "must be >= 1"),
    ({"PORT": "70000"}, "[IP] port"),
    ({"CONTENT_DELETE_SOURCE": "maybe"}, "[Content] delete_source"),
    ({"CONTENT_SAMPLING_MODE": "random"}, "timestamp, legacy"),
    ({"STORAGE_URL": "s3://"}, "needs a bucket"),
    ({"JOBS_HEARTBEAT_SECONDS": "90"}, "heartbeat_seconds"),
])
def test_bad_values_name_the_key(env, fragment):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert fragment in str(error.value)


def test_secrets_are_refused_in_the_file_and_hidden(tmp_path):
    cfg = tmp_path / "config.cfg"
    cfg.write_text("[App]\nAPI_key = committed-secret\n")
    with pytest.raises(ConfigError) as error:
        load_settings({}, cfg)
    assert "APP_API_KEY" in str(error.value) and "committed-secret" not in str(error.value)
    secrets = tmp_path / "secrets.ini"
    secrets.write_text("[App]\nAPI_key = from-file\n[S3]\nsecret_access_key = s3-secret\n")
    settings = load_settings({"CONFIG_SECRETS_FILE": str(secrets)})
    assert settings.api_keys == ("from-file",)
    assert "from-file" not in repr(settings) and "s3-secret" not in repr(settings)
    with pytest.raises(ConfigError) as error:
        load_settings({"MONGODB_PORT": "x", "APP_API_KEY": "hush"})
    assert "hush" not in str(error.value)


def test_bad_config_stops_start_up_with_a_clear_message():
    env = {**os.environ, "CONTENT_FRAMES_PER_TASK": "lots", "PORT": "18099"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "configuration error" in result.stderr and "[Content] frames_per_task" in result.stderr


def test_embedded_default_serves_node_over_the_wire_while_writing_in_process(tmp_path):
    """`python app.py` without MONGO_URI: the service writes through mongoeco's in-process client,
    and a pymongo client over the wire (as the Node platform) sees every document."""
    port, mongo_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO", "STORAGE"))}
    env.update({"PORT": str(port), "MONGODB_EMBEDDED_PORT": str(mongo_port), "APP_API_KEY": "k",
                "APP_DATA_DIR": str(tmp_path / "data"), "FOLDERS_CONTENT_BASE": str(tmp_path / "content"),
                "FOLDERS_TASK_BASE": str(tmp_path / "tasks"), "STORAGE_URL": str(tmp_path / "storage")})
    make_video(tmp_path / "content" / "clip.mp4", 30, 25)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "app.log", "w"))
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server)
        with MongoClient(f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true") as node:
            db = node[load_settings({}).mongo_db_name]
            upload_id, project_id = new_upload(db, "./clip.mp4")
            fields = fields_for(upload_id, project_id, "./clip.mp4", auth_key="k", frame_rate=5)
            assert post_node(f"http://127.0.0.1:{port}/api/processContent", fields).status_code == 202
            assert wait_for_upload(db, upload_id)["status"] == 1
            tasks = list(db.AnnotationTask.find({"uploadId": upload_id}))
            assert len(tasks) == 1 and tasks[0]["original_frames"] == [1, 6, 11, 16, 21, 26]
            assert db.AnnotationFrame.count_documents({"taskId": tasks[0]["_id"]}) == 6
            assert db.AnnotationProject.find_one({"_id": project_id})["contentUploads"] == [upload_id]
    finally:
        server.terminate()
        assert server.wait(30) == 0, (tmp_path / "app.log").read_text()[-2000:]


def test_production_env_example_loads_and_requires_the_privacy_key():
    example = ROOT / "deploy" / "media-service.env.example"
    env = dict(line.split("=", 1) for line in example.read_text().splitlines() if line and not line.startswith("#"))
    settings = load_settings(env)
    assert settings.privacy_require_key and settings.privacy_api_keys == ("CHANGE-ME",)
    assert settings.privacy_input_dir == "/srv/privacy/in" and settings.privacy_output_dir == "/srv/privacy/out"
    del env["PRIVACY_API_KEY"]
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert "PRIVACY_API_KEY" in str(error.value)
