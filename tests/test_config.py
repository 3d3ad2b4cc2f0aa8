"""Configuration: the file, env overrides by one rule, typed validation, secrets (issue 2)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from media_service.config import ConfigError, load_settings
from tests.conftest import ROOT


def test_defaults_from_the_committed_file():
    settings = load_settings({})
    assert settings.ip.port == 8081 and settings.content.frames_per_task == 120
    assert settings.storage.url == "./data/storage" and settings.app.api_keys == ()


def test_env_overrides_by_section_and_key():
    settings = load_settings({"CONTENT_FRAMES_PER_TASK": "60", "APP_API_KEY": "alpha-key, beta-key", "PORT": "9000",
                              "MONGO_URI": "mongodb://db:27017/x", "STORAGE_URL": "s3://bucket/pre",
                              "JOBS_MAX_ATTEMPTS": "5", "CONTENT_DELETE_SOURCE": "yes"})
    assert settings.content.frames_per_task == 60 and settings.app.api_keys == ("alpha-key", "beta-key")
    assert settings.ip.port == 9000
    assert settings.mongodb.uri == "mongodb://db:27017/x" and settings.storage.url == "s3://bucket/pre"
    assert settings.jobs.max_attempts == 5 and settings.content.delete_source is True


@pytest.mark.parametrize("env,fragment", [
    ({"CONTENT_FRAMES_PER_TASK": "many"}, "[Content] frames_per_task"),
    ({"CONTENT_FRAMES_PER_TASK": "0"}, "must be >= 1"),
    ({"PORT": "70000"}, "[IP] port"),
    ({"CONTENT_DELETE_SOURCE": "maybe"}, "[Content] delete_source"),
    ({"CONTENT_SAMPLING_MODE": "random"}, "timestamp, adaptive, legacy"),
    ({"STORAGE_URL": "s3://"}, "needs a bucket"),
    ({"JOBS_HEARTBEAT_SECONDS": "90"}, "heartbeat_seconds"),
    ({"APP_KEYLESS_NETWORKS": "10.0.0.0/8,the-node-host"}, "[App] keyless_networks"),
])
def test_bad_values_name_the_key(env, fragment):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert fragment in str(error.value)


def test_secrets_are_refused_in_the_file_and_hidden(tmp_path):
    cfg = ROOT / f".test-{os.getpid()}-config.cfg"  # a file in the repository, as the committed one is
    try:
        cfg.write_text("[App]\nAPI_key = committed-secret\n")
        with pytest.raises(ConfigError) as error:
            load_settings({}, cfg)
    finally:
        cfg.unlink()
    assert "APP_API_KEY" in str(error.value) and "committed-secret" not in str(error.value)
    # An operator's own (old) file outside the repository may hold them, with one warning.
    old = tmp_path / "config.cfg"
    old.write_text("[App]\nAPI_key = operators-secret\n[S3]\nsecret_access_key = s3-secret-x\n")
    settings = load_settings({}, old)
    assert settings.app.api_keys == ("operators-secret",)
    (notice,) = settings.notices
    assert "[App] API_key" in notice and "[S3] secret_access_key" in notice and "CONFIG_SECRETS_FILE" in notice
    assert "operators-secret" not in notice and "s3-secret-x" not in notice
    secrets = tmp_path / "secrets.ini"
    secrets.write_text("[App]\nAPI_key = from-file\n[S3]\nsecret_access_key = s3-secret\n")
    settings = load_settings({"CONFIG_SECRETS_FILE": str(secrets)})
    assert settings.app.api_keys == ("from-file",)
    assert "from-file" not in repr(settings) and "s3-secret" not in repr(settings)
    with pytest.raises(ConfigError) as error:
        load_settings({"MONGODB_PORT": "x", "APP_API_KEY": "hush"})
    assert "hush" not in str(error.value)


def test_bad_config_stops_start_up_with_a_clear_message():
    env = {**os.environ, "CONTENT_FRAMES_PER_TASK": "lots", "PORT": "18099"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "configuration error" in result.stderr and "[Content] frames_per_task" in result.stderr


def test_production_env_example_loads_and_requires_the_privacy_key():
    example = ROOT / "deploy" / "media-service.env.example"
    env = dict(line.split("=", 1) for line in example.read_text().splitlines() if line and not line.startswith("#"))
    settings = load_settings(env)
    assert settings.privacy.require_key and settings.privacy.api_keys == ("CHANGE-ME",)
    assert settings.privacy.input_dir == "/srv/privacy/in" and settings.privacy.output_dir == "/srv/privacy/out"
    del env["PRIVACY_API_KEY"]
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert "PRIVACY_API_KEY" in str(error.value)


def test_the_configuration_reference_is_generated_from_the_options_and_covers_config_cfg():
    """docs/CONFIGURATION.md is exactly what `python -m media_service.config` writes (so it cannot
    drift), every option has a meaning, and every key in config.cfg is a real option."""
    import configparser

    from media_service.config import OPTIONS, reference

    assert (ROOT / "docs" / "CONFIGURATION.md").read_text() == reference()
    assert all(option.doc and option.parse.kind for option in OPTIONS)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "config.cfg")
    known = {(o.section, o.key.lower()) for o in OPTIONS}
    unknown = [f"[{section}] {key}" for section in parser.sections() for key in parser[section]
               if (section, key.lower()) not in known]
    assert unknown == []


def test_the_old_bucket_name_selects_s3_unless_storage_url_is_set(tmp_path):
    old = tmp_path / "old.cfg"
    old.write_text("[S3]\nbucket_name = old-platform-bucket\nregion = eu-west-1\n")
    assert load_settings({}, old).storage.url == "s3://old-platform-bucket"
    assert load_settings({"STORAGE_URL": "s3://new-bucket/pre"}, old).storage.url == "s3://new-bucket/pre"
    plain = tmp_path / "plain.cfg"
    plain.write_text("[S3]\nregion = eu-west-1\n")
    assert load_settings({}, plain).storage.url == "./data/storage"


@pytest.mark.parametrize("env,fragment", [
    ({"ANNOTATION_LABEL_MAP": "person Staff"}, "[Annotation] label_map"),
    ({"ANNOTATION_LABEL_MAP": "person: Staff, : Phone"}, "[Annotation] label_map"),
    ({"ANNOTATION_MIN_SCORES": "face: high"}, "[Annotation] min_scores"),
    ({"AUGMENTATION_AUG_MAP": "[\"Fliplr\"]"}, "[Augmentation] aug_map"),
    ({"AUGMENTATION_AUG_MAP": "Fliplr, Flipud"}, "[Augmentation] aug_map"),
    ({"AUGMENTATION_RANGE_MAP": "blur: 0"}, "[Augmentation] range_map"),
    ({"AUGMENTATION_RANGE_MAP": "blur: ten"}, "[Augmentation] range_map"),
    ({"AUGMENTATION_DEFAULT_RANGES": "rotation"}, "[Augmentation] default_ranges"),
    ({"AUGMENTATION_DISABLED_AUGS": "{\"noise\": 1}"}, "[Augmentation] disabled_augs"),
    ({"AUGMENTATION_KEEP_SIZE_CROP": "maybe"}, "[Augmentation] keep_size_crop"),
    ({"AUGMENTATION_FRACTION": "2"}, "[Augmentation] fraction"),
    ({"AUGMENTATION_FRACTION": "half"}, "[Augmentation] fraction"),
])
def test_bad_annotation_and_augmentation_values_stop_start_up_naming_the_key(env, fragment):
    """Parsed in load_settings, not per job: a typo stops start-up instead of failing every job
    (retried max_attempts times) in a worker."""
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert fragment in str(error.value)


def test_annotation_and_augmentation_values_are_typed_at_start_up():
    settings = load_settings({"ANNOTATION_LABEL_MAP": "person: Staff, Cell Phone: Phone",
                              "ANNOTATION_MIN_SCORES": "face: 0.7", "AUGMENTATION_AUG_MAP": "mirror_x: Fliplr",
                              "AUGMENTATION_RANGE_MAP": '{"BLUR": 10}', "AUGMENTATION_DEFAULT_RANGES": "rotation: 30",
                              "AUGMENTATION_DISABLED_AUGS": "noise, sharpen", "AUGMENTATION_KEEP_SIZE_CROP": "false",
                              "AUGMENTATION_FRACTION": "0.5"})
    annotation, augmentation = settings.annotation, settings.augmentation
    assert annotation.label_map == {"person": "Staff", "Cell Phone": "Phone"} and annotation.min_scores == {"face": 0.7}
    assert augmentation.aug_map == {"mirror_x": "Fliplr"} and augmentation.range_map == {"BLUR": 10.0}
    assert augmentation.default_ranges == {"rotation": "30"} and augmentation.disabled_augs == ("noise", "sharpen")
    assert augmentation.keep_size_crop is False and augmentation.fraction == 0.5
    defaults = load_settings({}).augmentation
    assert (defaults.aug_map, defaults.range_map, defaults.default_ranges, defaults.disabled_augs) == ({}, {}, {}, ())
    assert defaults.keep_size_crop is True and defaults.fraction == 1.0  # empty in config.cfg: the old defaults
