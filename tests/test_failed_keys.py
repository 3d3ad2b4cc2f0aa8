"""Wrong keys are limited per client address (issue 21, item 5): after `[App] failed_key_limit`
wrong keys in the window, the next ones answer 429 with Retry-After on every keyed route, a right
key still works, another address is not limited, X-Forwarded-For counts only from a trusted proxy,
and the refusal is logged once a window."""
from __future__ import annotations

import http.client
import json
import logging

import pytest
import requests
from bson import ObjectId

from media_service.web.auth import FailedKeys
from tests.conftest import NODE_KEY
from tests.helpers import fields_for, post_node

WRONG = "not-the-key-0000"
PRIVACY_KEY = "privacy-key-1234"
LIMIT, WINDOW = 3, 600


@pytest.fixture
def limited(make_service):
    def start(**env):
        return make_service(APP_RUN_WORKERS="false", APP_FAILED_KEY_LIMIT=str(LIMIT),
                            APP_FAILED_KEY_WINDOW_SECONDS=str(WINDOW), PRIVACY_REQUIRE_KEY="true",
                            PRIVACY_API_KEY=PRIVACY_KEY, **env)
    return start


def status(service, key: str, **headers) -> requests.Response:
    return requests.get(f"{service.url}/api/processContent/status", headers=headers, timeout=10,
                        params={"upload_id": str(ObjectId()), "auth_key": key})


def from_address(service, source: str, key: str, forwarded_for: str | None = None) -> int:
    """The status code of a wrong-key request sent from another loopback address."""
    host, port = service.url.rsplit("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    connection.request("GET", f"/api/processContent/status?upload_id={ObjectId()}&auth_key={key}", headers=headers)
    code = connection.getresponse().status
    connection.close()
    return code


def assert_refused(answer: requests.Response) -> None:
    assert answer.status_code == 429, answer.text[:200]
    assert 1 <= int(answer.headers["Retry-After"]) <= WINDOW
    body = json.loads(answer.text)
    assert body["status"] == 429 and "too many wrong keys" in body["message"]


def test_wrong_keys_answer_429_on_every_keyed_route_and_a_right_key_still_works(limited, caplog):
    service = limited()
    for _ in range(LIMIT):
        assert status(service, WRONG).status_code == 401
    with caplog.at_level(logging.WARNING, logger="media_service.web.auth"):
        assert_refused(status(service, WRONG))
        assert_refused(post_node(f"{service.url}/api/processContent",
                                 fields_for(ObjectId(), ObjectId(), "./x.mp4", auth_key=WRONG)))
        assert_refused(requests.post(f"{service.url}/api/createDataSet", timeout=10,
                                     data={"data_version_id": str(ObjectId()), "auth_key": WRONG}))
        assert_refused(requests.get(f"{service.url}/process_status", params={"filename": "a.mp4"},
                                    headers={"X-API-Key": WRONG}, timeout=10))
        assert_refused(requests.get(f"{service.url}/api/jobs", headers={"X-API-Key": WRONG}, timeout=10))
        assert_refused(requests.post(f"{service.url}/jobs/login", data={"key": WRONG}, timeout=10))
    lines = [r for r in caplog.records if "wrong keys from 127.0.0.1" in r.getMessage()]
    assert len(lines) == 1  # once a window, not once a request

    # A right key from the same address is never refused, on any route.
    upload_id = ObjectId()
    answer = requests.get(f"{service.url}/api/processContent/status", timeout=10,
                          params={"upload_id": str(upload_id), "auth_key": NODE_KEY})
    assert answer.status_code == 404 and "no job" in answer.json()["message"]
    answer = post_node(f"{service.url}/api/processContent", fields_for(upload_id, ObjectId(), "./x.mp4"))
    assert answer.status_code == 404 and "not found" in answer.json()["message"]
    assert requests.get(f"{service.url}/api/jobs", headers={"X-API-Key": NODE_KEY}, timeout=10).status_code == 200
    privacy = requests.get(f"{service.url}/process_status", params={"filename": "a.mp4"},
                           headers={"X-API-Key": PRIVACY_KEY}, timeout=10)
    assert privacy.status_code == 404 and privacy.text == "Process does not exist"
    # A request with no key at all is no guess: 401 as before, not counted nor refused.
    assert requests.get(f"{service.url}/api/jobs", timeout=10).status_code == 401

    # Another address is counted on its own.
    assert from_address(service, "127.0.0.2", WRONG) == 401


def test_x_forwarded_for_counts_only_when_the_peer_is_a_trusted_proxy(limited):
    direct = limited()
    for number in range(LIMIT):  # the header is the client's to write: ignored
        assert status(direct, WRONG, **{"X-Forwarded-For": f"203.0.113.{number}"}).status_code == 401
    assert_refused(status(direct, WRONG, **{"X-Forwarded-For": "203.0.113.99"}))

    proxied = limited(APP_TRUSTED_PROXIES="127.0.0.1/32")
    for _ in range(LIMIT):
        assert status(proxied, WRONG, **{"X-Forwarded-For": "203.0.113.7"}).status_code == 401
    assert_refused(status(proxied, WRONG, **{"X-Forwarded-For": "203.0.113.7"}))
    # What the client wrote before our proxy's entry changes nothing; another client is not limited.
    assert_refused(status(proxied, WRONG, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}))
    assert status(proxied, WRONG, **{"X-Forwarded-For": "203.0.113.8"}).status_code == 401
    # From a peer that is not a trusted proxy, its own address counts, whatever the header says.
    for _ in range(LIMIT):
        assert from_address(proxied, "127.0.0.3", WRONG, forwarded_for="203.0.113.8") == 401
    assert from_address(proxied, "127.0.0.3", WRONG, forwarded_for="203.0.113.50") == 429
    assert status(proxied, WRONG, **{"X-Forwarded-For": "203.0.113.8"}).status_code == 401


def test_the_window_slides_and_the_refusal_is_logged_once_a_window(caplog):
    limiter = FailedKeys(limit=2, window=10)
    with caplog.at_level(logging.WARNING, logger="media_service.web.auth"):
        assert limiter.failed("a", now=0) is None and limiter.failed("a", now=1) is None
        assert limiter.failed("a", now=2) == pytest.approx(9)  # the wrong key at 1 leaves the window at 11
        assert limiter.failed("b", now=2) is None
        for now in (3, 5, 8):
            assert limiter.failed("a", now=now) is not None  # each refused try counts too
        assert limiter.failed("a", now=17) is None  # only the try at 8 is left in the window
        assert limiter.failed("a", now=17.5) == pytest.approx(9.5)
    logged = [r for r in caplog.records if "wrong keys from a " in r.getMessage()]
    assert len(logged) == 2  # at 2 and again at 17.5, a window later; not at 3, 5 and 8
