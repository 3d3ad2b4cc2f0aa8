"""Behind a reverse proxy (issue 32, part 1): every request arrives from the proxy's address, so the
keyless routes (POST /api/createDataSet from `[App] keyless_networks`, the privacy API from this
machine) must judge the client the proxy names, and believe only a proxy in `[App] trusted_proxies`.
Tested with forged headers and behind a real nginx running deploy/nginx.conf."""
from __future__ import annotations

import http.client
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import MongoClient

from media_service.web.client import Client, resolve
from tests.conftest import NODE_KEY, ROOT
from tests.helpers import clean_service_env, free_port, wait_until_ready

FORGED = [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"}]
LOCAL_PROXY = "127.0.0.1/32"
OUTSIDE = "127.0.0.9"  # a client nginx sees at another address (one that is not in keyless_networks)


def send(url: str, method: str, path: str, body: bytes = b"", source: str = "127.0.0.1", **headers) -> int:
    """The status of one request sent from the loopback address `source`."""
    host, port = url.rsplit("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    connection.request(method, path, body=body, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def create_dataset(url: str, source: str = "127.0.0.1", **headers) -> int:
    """POST /api/createDataSet without a key for a version that does not exist: 404 means the
    caller was let through keyless, 401 that it was refused."""
    return send(url, "POST", "/api/createDataSet", f"data_version_id={ObjectId()}".encode(), source, **headers)


def process_video(url: str, source: str = "127.0.0.1", **headers) -> int:
    """POST /process_video without a key for a file that does not exist: 404 through, 403 refused."""
    return send(url, "POST", "/process_video?filename=missing.mp4", b"", source, **headers)


@pytest.mark.parametrize("forged", FORGED, ids=lambda headers: next(iter(headers)))
def test_a_forwarding_header_from_a_peer_that_is_no_trusted_proxy_is_never_keyless(make_service, tmp_path, forged):
    (tmp_path / "videos").mkdir(exist_ok=True)
    service = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    client = service.app.test_client()
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    fields = {"data_version_id": str(ObjectId())}
    assert client.post("/api/createDataSet", data=fields, environ_base=loopback).status_code == 404
    assert client.post("/api/createDataSet", data=fields, environ_base=loopback, headers=forged).status_code == 401
    assert client.post("/process_video?filename=x.mp4", environ_base=loopback).status_code == 404
    assert client.post("/process_video?filename=x.mp4", environ_base=loopback, headers=forged).status_code == 403
    # A key still works whatever the headers say.
    keyed = client.post("/api/createDataSet", data={**fields, "auth_key": NODE_KEY}, environ_base=loopback,
                        headers=forged)
    assert keyed.status_code == 404


def test_behind_nginx_without_trusted_proxies_nothing_is_keyless(make_service, nginx_in_front, tmp_path):
    """The defect as a new user met it: nginx on the same host, the service's defaults."""
    (tmp_path / "videos").mkdir()
    service = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    proxy = nginx_in_front(service.url)
    assert create_dataset(service.url) == 404  # straight from this machine: keyless, as Node calls it
    assert create_dataset(proxy.url) == 401
    assert create_dataset(proxy.url, **{"X-Forwarded-For": "127.0.0.1"}) == 401
    assert process_video(proxy.url) == 403
    assert send(proxy.url, "POST", "/api/createDataSet",
                f"data_version_id={ObjectId()}&auth_key={NODE_KEY}".encode()) == 404  # a key goes through


def test_behind_a_trusted_nginx_the_client_it_names_decides(make_service, nginx_in_front, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"),
                           APP_TRUSTED_PROXIES=LOCAL_PROXY, APP_KEYLESS_NETWORKS="127.0.0.1/32",
                           APP_FAILED_KEY_LIMIT="2")
    proxy = nginx_in_front(service.url)
    assert create_dataset(proxy.url) == 404  # a caller on this machine, through the proxy
    assert create_dataset(proxy.url, source=OUTSIDE) == 401
    # What a client writes before nginx's own entry is the client's to write: never believed.
    assert create_dataset(proxy.url, source=OUTSIDE, **{"X-Forwarded-For": "127.0.0.1"}) == 401
    assert create_dataset(proxy.url, source=OUTSIDE, **{"X-Real-IP": "127.0.0.1"}) == 401
    assert create_dataset(proxy.url, source=OUTSIDE, **{"Forwarded": "for=127.0.0.1"}) == 401
    # Around the proxy, straight to the service, a forged header from a peer that is no proxy.
    assert create_dataset(service.url, source=OUTSIDE, **{"X-Forwarded-For": "127.0.0.1"}) == 401
    # The privacy API answers keyless callers on this machine only, through the proxy the same way.
    assert process_video(proxy.url) == 404
    assert process_video(proxy.url, **{"X-Forwarded-For": "203.0.113.9"}) == 403
    # Wrong keys are counted per client behind the proxy: the outside client is limited, not the proxy.
    wrong = f"data_version_id={ObjectId()}&auth_key=wrong-key-000".encode()
    assert [send(proxy.url, "POST", "/api/createDataSet", wrong, OUTSIDE) for _ in range(3)] == [401, 401, 429]
    assert send(proxy.url, "POST", "/api/createDataSet", wrong) == 401


def test_gunicorn_behind_nginx_logs_and_judges_the_client_nginx_names(mongo_uri, nginx_in_front, tmp_path):
    """The production layout end to end: gunicorn (forwarded_allow_ips from `[App] trusted_proxies`)
    behind nginx; its access log names the client, not the proxy."""
    db_name = "t_" + str(ObjectId())
    port = free_port()
    env = clean_service_env()
    env.update({"MONGO_URI": mongo_uri, "MONGODB_DB_NAME": db_name, "APP_API_KEY": NODE_KEY, "PORT": str(port),
                "IP_BIND_IP": "127.0.0.1", "APP_DATA_DIR": str(tmp_path / "data"), "JOBS_LAYOUT": "none",
                "APP_TRUSTED_PROXIES": LOCAL_PROXY, "APP_KEYLESS_NETWORKS": "127.0.0.1/32"})
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "wsgi:app", "-k", "gevent",
                               "--access-logfile", "-"], cwd=ROOT, env=env, stdout=open(log, "w"),
                              stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, server)
        proxy = nginx_in_front(url)
        assert create_dataset(proxy.url) == 404
        assert create_dataset(proxy.url, source=OUTSIDE) == 401
        assert create_dataset(url, **{"X-Forwarded-For": "127.0.0.1"}) == 404  # 127.0.0.1 is the trusted proxy
    finally:
        server.terminate()
        server.wait(60)
        with MongoClient(mongo_uri) as client:
            client.drop_database(db_name)
    lines = [line for line in log.read_text().splitlines() if "POST /api/createDataSet" in line]
    assert [line.split()[0] for line in lines] == ["127.0.0.1", OUTSIDE, "127.0.0.1"], lines


NETS = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize("peer, headers, expected", [
    ("198.51.100.7", {}, Client("198.51.100.7", True)),
    ("127.0.0.1", {"X-Forwarded-For": "10.1.1.1"}, Client("127.0.0.1", False)),  # not a trusted proxy
    ("127.0.0.1", {"x-real-ip": "10.1.1.1"}, Client("127.0.0.1", False)),
    ("10.0.0.2", {"X-Forwarded-For": "203.0.113.9"}, Client("203.0.113.9", True)),
    ("10.0.0.2", {"X-Forwarded-For": "203.0.113.9, 10.0.0.3"}, Client("203.0.113.9", True)),  # two proxies
    ("10.0.0.2", {"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}, Client("203.0.113.9", True)),  # forged first hop
    ("10.0.0.2", {"X-Forwarded-For": "10.0.0.5"}, Client("10.0.0.5", True)),  # a client inside the proxies' net
    ("10.0.0.2", {"X-Forwarded-For": "not-an-address"}, Client("not-an-address", True)),
    ("10.0.0.2", {}, Client("10.0.0.2", True)),  # the proxy's host calling directly
    ("10.0.0.2", {"Forwarded": "for=10.0.0.9"}, Client("10.0.0.2", False)),  # a header the proxy did not set
    ("::ffff:10.0.0.2", {"X-Forwarded-For": "2001:db8::1"}, Client("2001:db8::1", True)),
])
def test_the_client_is_judged_by_one_rule(peer, headers, expected):
    from werkzeug.datastructures import Headers

    client = resolve(peer, Headers(headers), NETS)
    assert client == expected
    assert client.in_networks(NETS) is (expected.vouched and expected.address.startswith("10."))
    assert not Client("not-an-address", True).in_networks(NETS)
