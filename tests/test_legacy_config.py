"""An old service's config.cfg carries over (issue 17 item 9): Python literals, old keys with their
old meanings, one warning for each key that cannot be honoured, secrets allowed (with a warning)
in an operator's own file; the service starts on it and builds a dataset version."""
from __future__ import annotations

import logging
import threading
import uuid
from urllib.parse import urlsplit

import pytest

from media_service.legacy_config import literal_text
from tests.conftest import NODE_KEY, LiveService, drop_database


@pytest.mark.parametrize("raw,text", [
    ("{'mp4', 'avi'}", "avi,mp4"), ("['NOISE', 'SHARPEN']", "NOISE,SHARPEN"), ("True", "true"), ("False", "false"),
    ("{'BLUR': 10}", '{"BLUR": 10}'), ("'opencv-inference'", "opencv-inference"), ("mp4,avi", "mp4,avi"),
    ("{not python", "{not python"), ("__import__('os').system('true')", "__import__('os').system('true')"),
])
def test_python_literals_are_read_without_eval(raw, text):
    assert literal_text(raw) == text


OLD_CONFIG = """
[MongoDB]
db_name = {db}
port = {port}
user_name =
password =

[IP]
server_ip = {host}

[S3]
region = eu-west-1
access_key_id =
secret_access_key =

[App]
API_key = {key}

[Content]
allowed_extensions = {{'mp4', 'avi'}}
frames_per_task = 120

[Inference]
type = opencv-inference
gpu_device_id = 0
weight_tf = /opt/models/frozen.pb
objectness_confidance = 0.45
nms_threshold = 0.3
default_net_width = 416
default_net_height = 416

[Folders]
content_base = {content}
task_base = {tasks}
clip_base = /srv/old/clips
aug_base = /srv/old/aug

[Cores]
cpu_cores = 2

[Augmentation]
aug_map = {{'FLIP_HORIZONTAL': 'Fliplr', 'BLUR': 'GaussianBlur', 'NOISE': 'AdditiveGaussianNoise'}}
keep_size_crop = True
disabled_augs = ['NOISE']
range_map = {{'BLUR': 10}}
"""


def test_the_service_starts_on_an_old_config_and_builds_a_version_with_its_aug_map(tmp_path, mongo_uri, caplog):
    from werkzeug.serving import make_server

    from app import create_app
    from media_service.config import load_settings
    from media_service.datasets import augment_plan
    from media_service.datasets.build import DatasetBuilder
    from tests.test_datasets import create, make_version, wait_built

    address = urlsplit(mongo_uri)
    if address.username or not address.port:
        pytest.skip("the old keys name a host and port without credentials: run against the embedded mongod")
    db = "t_" + uuid.uuid4().hex[:12]
    old = tmp_path / "config.cfg"  # the operator's own file, outside the repository
    old.write_text(OLD_CONFIG.format(key=NODE_KEY, db=db, port=address.port, host=address.hostname,
                                     content=tmp_path / "content", tasks=tmp_path / "tasks"))
    (tmp_path / "content").mkdir()
    server = make_server("127.0.0.1", 0, None, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = load_settings({"CONFIG_FILE": str(old), "APP_DATA_DIR": str(tmp_path / "data"),
                              "STORAGE_URL": str(tmp_path / "storage"), "APP_PUBLIC_URL": url,
                              "FOLDERS_CONTENT_PATH_BASE": str(tmp_path / "content"), "JOBS_POLL_SECONDS": "0.1"})
    # Old keys, old meanings.
    assert settings.mongodb.host == address.hostname and settings.mongodb.port == address.port
    assert settings.mongodb.db_name == db and settings.app.api_keys == (NODE_KEY,)
    assert settings.content.allowed_extensions == ("avi", "mp4") and settings.inference.type == "darknet"
    assert (settings.inference.net_width, settings.inference.net_height) == (416, 416)
    assert settings.augmentation.keep_size_crop is True and settings.augmentation.disabled_augs == ("NOISE",)
    notices = "\n".join(settings.notices)
    for key in ("gpu_device_id", "weight_tf", "clip_base", "aug_base", "[App] API_key"):
        assert notices.count(key) == 1, key
    assert NODE_KEY not in notices

    with caplog.at_level(logging.WARNING):
        app = server.app = create_app(settings)
    assert "configuration: config.cfg: [Inference] gpu_device_id is not used" in caplog.text
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service = LiveService(url, app, settings, tmp_path / "content")
    try:
        assert service.db.name == db  # the MongoDB the old keys name, not an embedded one
        builder = DatasetBuilder(service.services.mongo, service.services.storage, settings)
        assert builder.augmentation.keep_size_crop is True
        types = {"IMAGE_LEVEL": [
            {"id": "FLIP", "properties": [{"id": "FLIP_HORIZONTAL", "values": [True]}]},
            {"id": "BLUR", "properties": [{"id": "BLUR", "values": [5, 15]}]},
            {"id": "NOISE", "properties": [{"id": "NOISE", "values": [3]}]}], "BOUNDING_BOX_LEVEL": []}
        plan = augment_plan.requested_augmentations(types, builder.augmentation)
        assert [(r.aug_type, r.augmenter, r.params) for r in plan.requests] == [
            ("Fliplr", "HorizontalFlip", None), ("GaussianBlur", "GaussianBlur", (0.5, 1.5))]  # UI 5..15 / 10
        assert plan.disabled == ["NOISE"]

        version = make_version(service, frames=6, per_task=3, augmentationTypes=types)
        answer = create(service, version.id)
        assert answer.status_code == 201, answer.text
        assert wait_built(service, version.id)["state"] == "done"
        frame = service.db.AnnotationFrame.find_one({"taskId": version.tasks[0]["_id"], "frameId": 1})
        assert set(frame["datasetVersions"][0]["augmentationImages"]) == {"Fliplr", "GaussianBlur"}
        assert frame["datasetVersions"][0]["augmentationImages"]["Fliplr"]["imageUrl"].endswith("/Fliplr_1.jpg")
    finally:
        server.shutdown()
        service.services.close(grace=5)
        drop_database(mongo_uri, db)
