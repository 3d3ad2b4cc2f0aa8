"""Objects in local storage over HTTP (issue 17 item 3): expiring signed URLs where S3 would have
presigned ones, served by GET /storage/<key> with range requests, for that one object only."""
from __future__ import annotations

import http.client
import os
from urllib.parse import urlsplit

import requests

from media_service.signed_urls import UrlSigner
from tests.browser import wait_js
from tests.media import make_video
from tests.test_pipeline import process, stored_file


def test_a_signature_opens_one_key_until_it_expires():
    signer = UrlSigner(b"s" * 32, "http://media.example:8081/")
    url = signer.url("contents/p/t/t.mp4", 60, now=1000)
    assert url.startswith("http://media.example:8081/storage/contents/p/t/t.mp4?expires=1060&signature=")
    signature = url.rsplit("=", 1)[1]
    assert signer.check("contents/p/t/t.mp4", "1060", signature, now=1059) is None
    assert signer.check("contents/p/t/t.mp4", "1060", signature, now=1061) == "expired"
    assert signer.check("contents/p/t/other.mp4", "1060", signature, now=1000) == "bad signature"
    assert signer.check("contents/p/t/t.mp4", "9999", signature, now=1000) == "bad signature"
    assert signer.check("contents/p/t/t.mp4", None, None) == "unsigned"
    assert UrlSigner(b"x" * 32, "http://h").check("contents/p/t/t.mp4", "1060", signature, now=1000) == "bad signature"


def raw_get(url: str, path: str) -> int:
    """GET with the path sent exactly as written (no client-side clean-up of `..`)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", path)
    status = connection.getresponse().status
    connection.close()
    return status


def test_signed_urls_serve_ranges_and_nothing_else(service, tmp_path, browser):
    upload, tasks = process(service, make_video(tmp_path / "seek.mp4", 250, 25), 5)
    key = tasks[0]["S3_url"]
    data = stored_file(service, key).read_bytes()
    storage = service.services.storage
    url = storage.url(key, 600)
    assert url.startswith(f"{service.url}/storage/{key}?expires=")
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == data and whole.headers["Content-Type"] == "video/mp4"
    part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"

    base, query = url.split("?")
    expires, signature = (field.split("=")[1] for field in query.split("&"))
    assert requests.get(f"{base}?expires={expires}&signature={'0' * 64}", timeout=10).status_code == 403
    assert requests.get(f"{base}?expires={int(expires) + 60}&signature={signature}", timeout=10).status_code == 403
    assert requests.get(base, timeout=10).status_code == 403
    assert requests.get(storage.signer.url(key, -5), timeout=10).status_code == 403  # expired
    other = tasks[0]["S3_url"].replace("task-0", "task-1")
    assert requests.get(f"{service.url}/storage/{other}?expires={expires}&signature={signature}",
                        timeout=10).status_code == 403

    # Validly signed, but not a regular file inside the storage folder: no listing, no way out.
    secret = service.content / "secret.txt"
    secret.write_text("not for you")
    os.symlink(secret, stored_file(service, key).parent / "link.mp4")
    for name in ("contents", "/".join(key.split("/")[:-1]) + "/link.mp4", "contents/../../content/secret.txt"):
        signed = storage.signer.url(name, 60)
        assert raw_get(service.url, signed[len(service.url):]) == 404, name
    assert requests.get(f"{service.url}/storage/", timeout=10).status_code == 404

    # A browser plays it from the URL alone (no session) and seeks, by range requests.
    browser.get(url)
    wait_js(browser, "const v = document.querySelector('video'); if (!v) return false; v.muted = true;"
                     "if (v.paused && !v.ended) v.play().catch(() => {});"
                     "return v.readyState >= 2 && v.currentTime > 0",
            what="the task video to play through its signed URL")
    browser.execute_script("const v = document.querySelector('video'); v.pause(); window.seeked = false;"
                           "v.addEventListener('seeked', () => { window.seeked = true; }); v.currentTime = 7.5;")
    state = wait_js(browser, "const v = document.querySelector('video'); return window.seeked && v.readyState >= 2"
                             " && [v.currentTime, v.duration, v.videoWidth, v.error]", what="the seek to 7.5 s")
    assert abs(state[0] - 7.5) < 0.3 and abs(state[1] - 10) < 0.3 and state[2] == 320 and state[3] is None
