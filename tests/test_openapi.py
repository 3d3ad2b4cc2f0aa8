"""OpenAPI (issue 14, item 3): the description validates as OpenAPI 3, names every route the app
serves and nothing else, the docs page loads nothing from another host, and schemathesis, run
against the live app, gets no 5xx and no answer the description does not allow."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import yaml
from bson import ObjectId
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from media_service.web import openapi, privacy
from tests.browser import wait_js
from tests.conftest import NODE_KEY
from tests.helpers import fields_for, new_upload, post_node

PRIVACY_KEY = "privacy-key-for-tests"
# Per operation and phase (the coverage phase adds its own cases): about 15 s for the run on 2 cores.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "14"))


def operations(spec: dict) -> set[tuple[str, str]]:
    return openapi.spec_operations(spec)


def test_the_description_is_valid_openapi(idle_service):
    validate(openapi.source_spec())
    served = requests.get(f"{idle_service.url}/openapi.json", timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"] == "application/json"
    validate(served.json())
    assert served.json()["openapi"].startswith("3.")
    as_yaml = requests.get(f"{idle_service.url}/openapi.yaml", timeout=10)
    assert as_yaml.status_code == 200 and as_yaml.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == served.json()


def test_every_route_is_described_and_nothing_else(idle_service):
    """The app's URL map and the served description name the same operations, so neither can
    drift: a new route without its description fails here, and so does a described route that
    is gone. Paths marked `x-pending` are the only ones described but not yet served."""
    app_ops = openapi.app_operations(idle_service.app)
    served = requests.get(f"{idle_service.url}/openapi.json", timeout=10).json()
    missing, extra = sorted(app_ops - operations(served)), sorted(operations(served) - app_ops)
    assert not missing, f"routes missing from media_service/web/openapi.yaml: {missing}"
    assert not extra, f"described operations the app does not serve: {extra}"

    source = openapi.source_spec()
    pending = {(path, method) for path, method in operations(source) if source["paths"][path].get("x-pending")}
    assert operations(source) - pending == app_ops, "every path not marked x-pending must be served"
    assert not pending & app_ops, ("these routes exist now: remove their `x-pending: true` in openapi.yaml "
                                   f"and check their answers: {sorted(pending & app_ops)}")
    # What the contract names is there, with both APIs.
    for path in ("/api/processContent", "/api/processContent/status", "/api/processContent/cancel",
                 "/api/createDataSet", "/api/editDataSet", "/api/health", "/api/ready", "/process_video",
                 "/process_status", "/cancel_process", "/health", "/openapi.json", "/api/docs"):
        assert path in served["paths"], path
    encodings = served["paths"]["/api/processContent"]["post"]["requestBody"]["content"]
    assert set(encodings) == {"multipart/form-data", "application/x-www-form-urlencoded", "application/json"}


def test_every_operation_lists_its_answers_with_bodies():
    for path, method in operations(openapi.source_spec()):
        operation = openapi.source_spec()["paths"][path][method]
        assert operation.get("responses"), (path, method)
        assert "security" in operation, f"{method} {path}: say which key it needs (security: [] for none)"
        for status, response in operation["responses"].items():
            if "$ref" in response or status == "204" or status.startswith("3"):
                continue
            assert response.get("content"), f"{method} {path} {status}: no body described"


def test_the_description_follows_the_configuration(make_service):
    """Privacy routes: anonymous alternative only without [Privacy] require_key; gone when disabled."""
    keyed = make_service(APP_RUN_WORKERS="false", PRIVACY_REQUIRE_KEY="true", PRIVACY_API_KEY=PRIVACY_KEY)
    spec = requests.get(f"{keyed.url}/openapi.json", timeout=10).json()
    assert spec["paths"]["/process_video"]["post"]["security"] == [{"PrivacyApiKey": []}, {"PrivacyBearer": []}]
    assert spec["paths"]["/health"]["get"]["security"] == []
    off = make_service(APP_RUN_WORKERS="false", PRIVACY_ENABLED="false")
    spec = requests.get(f"{off.url}/openapi.json", timeout=10).json()
    assert "/process_video" not in spec["paths"] and "/api/processContent" in spec["paths"]
    validate(spec)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "data-spec-url", "action") and value:
                self.urls.append(value)


EXTERNAL = re.compile(r"(?:https?:)?//([^/\s\"'<>)]+)", re.I)


def _external_hosts(text: str, own: str) -> set[str]:
    return {host for host in EXTERNAL.findall(text) if host != own}


def test_the_docs_page_loads_only_from_this_service(idle_service):
    page = requests.get(f"{idle_service.url}/api/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    own = urlsplit(idle_service.url).netloc
    assert _external_hosts(page.text, own) == set(), "the page names another host"
    assert "<script>" not in page.text  # no inline script: everything it runs is one of the files below
    parser = _Links()
    parser.feed(page.text)
    expected = {"text/css", "text/javascript", "image/png", "application/json"}
    seen = set()
    for url in parser.urls:
        absolute = urljoin(page.url, url)
        assert urlsplit(absolute).netloc == own, url
        answer = requests.get(absolute, timeout=10)
        assert answer.status_code == 200, url
        kind = answer.headers["Content-Type"].split(";")[0]
        seen.add(kind)
        if kind == "text/css":  # what a style sheet loads: data: URIs only
            refs = re.findall(r"url\(\s*['\"]?([^'\")]+)", answer.text) + re.findall(r"@import\s+['\"]([^'\"]+)",
                                                                                     answer.text)
            assert all(ref.startswith("data:") for ref in refs), [r[:60] for r in refs if not r.startswith("data:")]
        if url.endswith("docs-init.js"):
            assert _external_hosts(answer.text, own) == set()
            assert "validatorUrl: null" in answer.text  # Swagger UI would send the spec to validator.swagger.io
    assert seen == expected, seen
    assert "/openapi.json" in parser.urls
    bundle = requests.get(f"{idle_service.url}/api/docs/swagger-ui-bundle.js", timeout=10).text
    assert "sourceMappingURL=http" not in bundle
    for licence in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        assert requests.get(f"{idle_service.url}/api/docs/{licence}", timeout=10).status_code == 200
    assert requests.get(f"{idle_service.url}/api/docs/..%2Fopenapi.py", timeout=10).status_code == 404
    assert requests.get(f"{idle_service.url}/api/docs/nothing.js", timeout=10).status_code == 404


def test_the_docs_page_in_a_browser_asks_nothing_of_another_host(idle_service):
    """Headless Chromium (Debian's chromium and chromium-driver) loads the page: every request it
    makes goes to this service, and Swagger UI shows every operation of the description."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,2000"):
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(f"{idle_service.url}/api/docs")
        described = len(operations(requests.get(f"{idle_service.url}/openapi.json", timeout=10).json()))
        wait_js(browser, "return document.querySelectorAll('.opblock').length >= arguments[0]", described,
                timeout=20, what=f"Swagger UI to show the {described} operations described")
        assert browser.execute_script("return document.querySelectorAll('.opblock').length") == described
        requested = {json.loads(entry["message"])["message"]["params"]["request"]["url"]
                     for entry in browser.get_log("performance")
                     if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"}
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        browser.quit()
    own = urlsplit(idle_service.url).netloc
    elsewhere = {url for url in requested if not url.startswith("data:") and urlsplit(url).netloc != own}
    assert not elsewhere, elsewhere
    assert f"{idle_service.url}/openapi.json" in requested and not errors, errors


# --- schemathesis against the live app ---------------------------------------------------------------


def _toml(value) -> str:
    return json.dumps(value)  # a JSON string or array of strings is a TOML one


def _config(ids: dict[str, list[str]], hooks: Path) -> str:
    """schemathesis.toml: the keys where the description says they go, and the seeded values offered
    for the fields that name things, so that generated requests get past validation into the
    routes' work (half of the time; POST /api/processContent most of the time, as it has the most
    fields to get right)."""
    lines = [
        f"hooks = {_toml(str(hooks))}",
        "[generation]", 'database = "none"', f"max-examples = {MAX_EXAMPLES}",
        "[phases.stateful]", "enabled = false",
        "[auth.openapi.ApiKey]", f"api_key = {_toml(NODE_KEY)}",
        "[auth.openapi.AuthKey]", f"api_key = {_toml(NODE_KEY)}",
        "[auth.openapi.PrivacyApiKey]", f"api_key = {_toml(PRIVACY_KEY)}",
        "[auth.openapi.PrivacyBearer]", f"bearer = {_toml(PRIVACY_KEY)}",
    ]
    for name, values in {**ids, **PROCESS_CONTENT_VALUES}.items():
        lines += [f"[dictionaries.{name}]", f"values = {_toml(values)}"]
    lines.append("[parameters]")
    for name in ids:  # a new route's ids: add them to `seeded`'s ids (path parameters included)
        for location in ("body", "query", "path"):
            lines.append(f'"{location}.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    lines += ["[[operations]]", 'include-operation-id = "processContent"', "[operations.parameters]"]
    for name in [*ids, *PROCESS_CONTENT_VALUES]:
        lines.append(f'"body.{name}" = {{ dictionary = "{name}", probability = 0.85 }}')
    # Not supported, on purpose and as documented (docs/DATASETS.md, CONTRACT §1 "a clear, documented response"):
    # 501 Not Implemented is that answer, not a server error.
    lines += ["[[operations]]", 'include-operation-id = "editDataSet"', "[operations.checks.not_a_server_error]",
              'expected-statuses = ["2xx", "3xx", "4xx", 501]']
    return "\n".join(lines) + "\n"


# POST /api/processContent reads its key only from its auth_key field (security: [] there; the field
# is described with the body, as the AuthKey scheme says): every case that sends a non-empty string
# there sends the right key, in every phase, so the checks after the key are reached too. (A missing,
# empty or non-string auth_key is left as generated; schemathesis revalidates the edited case.)
HOOKS = f"""
import schemathesis

@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path == "/api/processContent" and case.method.upper() == "POST" \\
            and isinstance(case.body, dict) and isinstance(case.body.get("auth_key"), str) and case.body["auth_key"]:
        case.body["auth_key"] = {NODE_KEY!r}
"""

# Values Node sends, offered for the fields of POST /api/processContent besides the seeded ids.
PROCESS_CONTENT_VALUES = {"frame_rate": ["5", "1", " 30 "], "force_write": ["0", "1"], "request_type": ["0"],
                          "auto_anno_version": ["0"], "content_type": ["1", ""]}


@pytest.fixture
def seeded(make_service, tmp_path, monkeypatch):
    """The live app without workers (accepted jobs stay queued), a key for both APIs, and something
    real for each route to find: an upload with its project and video, a queued job, a dataset
    version, a privacy video with a queued job."""
    monkeypatch.setattr(privacy, "CANCEL_WAIT_SECONDS", 0.2)  # no worker will stop the job: don't wait 30 s
    privacy_dir = tmp_path / "privacy"
    privacy_dir.mkdir()
    (privacy_dir / "walk.mp4").write_bytes(b"\0" * 64)  # only its name and kind are checked before queueing
    # No limit on wrong keys: the fuzzer sends hundreds and checks each is answered 401 or 403
    # (tests/test_failed_keys.py checks the limit).
    live = make_service(APP_RUN_WORKERS="false", PRIVACY_REQUIRE_KEY="true", PRIVACY_API_KEY=PRIVACY_KEY,
                        PRIVACYPAL_VIDEO_DIRECTORY=str(privacy_dir), APP_FAILED_KEY_LIMIT="0")
    (live.content / "uploads").mkdir(parents=True)
    for name in ("clip.mp4", "other.mp4", "notes.txt"):  # only names, kinds and sizes are checked before queueing
        (live.content / "uploads" / name).write_bytes(b"\0" * 64)
    queued_upload, project = new_upload(live.db, "./uploads/clip.mp4")
    waiting_upload = ObjectId()  # same project; other.mp4 gets it queued (202), clip.mp4 a 409 (busy)
    live.db.AnnotationContentUpload.insert_one({"_id": waiting_upload, "projectId": project, "status": 0,
                                                "progress": 0, "frames_per_task": 120})
    answer = post_node(f"{live.url}/api/processContent", fields_for(queued_upload, project, "./uploads/clip.mp4"))
    assert answer.status_code == 202, answer.text
    version = ObjectId()
    live.db.AnnotationDatasetVersion.insert_one({"_id": version, "taskList": [str(ObjectId())], "versionNo": "1.0.0"})
    assert requests.post(f"{live.url}/process_video", params={"filename": "walk.mp4"},
                         headers={"X-API-Key": PRIVACY_KEY}, timeout=10).status_code == 202
    # Repeated values are drawn more often: the waiting upload with other.mp4 is what gets a 202.
    ids = {"upload_id": [str(waiting_upload), str(waiting_upload), str(queued_upload)], "project_id": [str(project)],
           "content_path": ["./uploads/other.mp4", "./uploads/other.mp4", "./uploads/other.mp4", "./uploads/clip.mp4",
                            "./uploads/notes.txt", "./uploads", "./uploads/missing.mp4", "../outside.mp4"],
           "data_version_id": [str(version)], "filename": ["walk.mp4", "missing.mp4", "../walk.mp4"]}
    return live, ids


def test_schemathesis_finds_nothing(seeded, tmp_path, caplog):
    live, ids = seeded
    config = tmp_path / "schemathesis.toml"
    (tmp_path / "hooks.py").write_text(HOOKS)
    config.write_text(_config(ids, tmp_path / "hooks.py"))
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
               f"{live.url}/openapi.json", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--continue-on-failure",
               "--phases", "examples,coverage,fuzzing",
               "--seed", str(SEED), "--workers", "2", "--request-timeout", "20", "--max-failures", "50",
               "--report", "har", "--report-har-path", str(report), "--output-truncate", "false"]
    started = time.monotonic()
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert run.returncode == 0, (f"schemathesis found problems (exit {run.returncode}, {took:.0f}s; all of its output "
                                 f"in {tmp_path / 'schemathesis.txt'}):\n{output[-20000:]}")

    # Independently of schemathesis's own checks: what it sent reached every operation, and no
    # answer was a 5xx, and the app logged no unhandled error.
    entries = json.loads(report.read_text())["log"]["entries"]
    statuses = [entry["response"]["status"] for entry in entries]
    errors = [(entry["request"]["method"], entry["request"]["url"], entry["response"]["status"]) for entry in entries
              if entry["response"]["status"] >= 500
              and not (entry["response"]["status"] == 501 and entry["request"]["url"].endswith("/api/editDataSet"))]
    assert statuses and not errors, errors[:20]
    reached = {(urlsplit(entry["request"]["url"]).path, entry["request"]["method"].lower()) for entry in entries}
    served = operations(requests.get(f"{live.url}/openapi.json", timeout=10).json()) - {("/openapi.json", "get")}
    unreached = {(path, method) for path, method in served
                 if not any(re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", path), p) and m == method for p, m in reached)}
    assert not unreached, unreached
    assert not [r for r in caplog.records if r.getMessage() == "unhandled error"]
    accepted = {(urlsplit(entry["request"]["url"]).path, entry["response"]["status"]) for entry in entries}
    for success in (("/api/processContent", 202), ("/api/processContent", 200), ("/api/processContent/cancel", 202),
                    ("/api/createDataSet", 201), ("/process_video", 202),
                    ("/cancel_process", 202)):
        assert success in accepted, f"no generated request reached {success}: the seeding no longer works"
    print(f"schemathesis: {len(entries)} requests in {took:.1f}s; answers {sorted(set(statuses))}")


# --- what schemathesis does not generate ------------------------------------------------------------
# Its strings are valid Unicode text sent as UTF-8; these are not. Each must get a 4xx (or its normal
# answer), never a 5xx, with a body the description allows.

def _conforms(spec: dict, path: str, method: str, response: requests.Response) -> None:
    answers = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in answers, f"{method.upper()} {path}: {status} is not described ({response.text[:200]})"
    pointer = f"/paths/{path.replace('~', '~0').replace('/', '~1')}/{method}/responses/{status}"
    answer = answers[status]
    if "$ref" in answer:
        pointer = answer["$ref"][1:]
        answer = spec["components"]["responses"][pointer.rsplit("/", 1)[1]]
    kind = response.headers["Content-Type"].split(";")[0].strip()
    assert kind in answer["content"], f"{method.upper()} {path} {status}: {kind} is not described"
    body = response.json() if kind == "application/json" else response.text
    registry = Registry().with_resource("urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012))
    schema = {"$ref": f"urn:spec#{pointer}/content/{kind.replace('/', '~1')}/schema"}
    errors = [error.message for error in Draft202012Validator(schema, registry=registry).iter_errors(body)]
    assert not errors, f"{method.upper()} {path} {status}: {errors} in {body!r:.300}"


def _multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value
                    + b"\r\n" for name, value in fields.items()) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _odd_requests(ids: dict[str, list[str]]) -> list[tuple[str, str, str, dict]]:
    """(label, method, path, requests kwargs)."""
    upload, project = ids["upload_id"][0], ids["project_id"][0]
    valid = {"upload_id": upload, "auth_key": NODE_KEY, "project_id": project, "frame_rate": "5",
             "content_path": "./uploads/other.mp4", "force_write": "0", "auto_anno_version": "0", "request_type": "0"}
    as_json = {"Content-Type": "application/json"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def json_with(**raw: str) -> bytes:  # raw JSON text for some values: escapes json.dumps would not write
        fields = {name: json.dumps(value) for name, value in valid.items()} | raw
        return ("{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}").encode()

    multipart_bad, multipart_type = _multipart({**{k: v.encode() for k, v in valid.items()},
                                                "content_path": b"./uploads/\xff\xfe.mp4"})
    cases = [
        ("lone surrogate in auth_key", "post", "/api/processContent", {"data": json_with(auth_key='"\\ud800"'),
                                                                       "headers": as_json}),
        ("lone surrogate in content_path", "post", "/api/processContent",
         {"data": json_with(content_path='"./uploads/\\udc80.mp4"'), "headers": as_json}),
        ("lone surrogate as a field name", "post", "/api/processContent",
         {"data": b'{"\\ud800": "x", "upload_id": "\\udfff"}', "headers": as_json}),
        ("invalid UTF-8 in JSON", "post", "/api/processContent", {"data": b'{"upload_id": "\xff\xfe"}',
                                                                  "headers": as_json}),
        ("invalid UTF-8 in a url-encoded value", "post", "/api/processContent",
         {"data": b"upload_id=%ff%fe&auth_key=\xff", "headers": form}),
        ("invalid UTF-8 in a multipart value", "post", "/api/processContent",
         {"data": multipart_bad, "headers": {"Content-Type": multipart_type}}),
        ("multipart without a boundary", "post", "/api/processContent",
         {"data": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}}),
        ("an unknown charset", "post", "/api/processContent",
         {"data": b"upload_id=x", "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"}}),
        ("an odd content type", "post", "/api/processContent",
         {"data": b"\x00\x01", "headers": {"Content-Type": ";;="}}),
        ("no content type", "post", "/api/processContent", {"data": b"upload_id=x", "headers": {"Content-Type": ""}}),
        ("no body", "post", "/api/processContent", {}),
        ("a JSON array", "post", "/api/processContent", {"data": b"[1, 2]", "headers": as_json}),
        ("JSON nested too deeply", "post", "/api/processContent", {"data": b"[" * 50000 + b"]" * 50000,
                                                                    "headers": as_json}),
        ("a number of 5000 digits", "post", "/api/processContent", {"data": json_with(frame_rate="9" * 5000),
                                                                    "headers": as_json}),
        ("a number of 4000 digits", "post", "/api/processContent", {"data": json_with(frame_rate="9" * 4000),
                                                                    "headers": as_json}),
        ("1e999 and NaN", "post", "/api/processContent", {"data": json_with(frame_rate="1e999", force_write="NaN"),
                                                          "headers": as_json}),
        ("digits that are not ASCII", "post", "/api/processContent", {"data": json_with(frame_rate='"\\u0665"'),
                                                                      "headers": as_json}),
        ("a NUL in content_path", "post", "/api/processContent", {"data": json_with(content_path='"a\\u0000.mp4"'),
                                                                  "headers": as_json}),
        ("lone surrogate key to cancel", "post", "/api/processContent/cancel",
         {"data": f'{{"upload_id": "{upload}", "auth_key": "\\udc80"}}'.encode(), "headers": as_json}),
        ("lone surrogate key to createDataSet", "post", "/api/createDataSet",
         {"data": f'{{"data_version_id": "{ids["data_version_id"][0]}", "auth_key": "\\ud800"}}'.encode(),
          "headers": as_json}),
        ("invalid UTF-8 in the status query", "get", "/api/processContent/status",
         {"params": b"upload_id=%ff&auth_key=%fe"}),
        ("a key header that is not ASCII", "get", "/api/processContent/status",
         {"params": {"upload_id": upload}, "headers": {"X-API-Key": "\u00e9\u00ff".encode("latin-1")}}),
        ("invalid UTF-8 as the file name", "post", "/process_video", {"data": b"\xff\xfe.mp4"}),
        ("invalid UTF-8 in filename=", "post", "/process_video", {"params": b"filename=%ff%00.mp4"}),
        ("a file name in an unknown charset", "post", "/process_video",
         {"data": b"walk.mp4", "headers": {"Content-Type": "text/plain; charset=bogus"}}),
        ("a file name of 5000 bytes", "post", "/process_video", {"params": {"filename": "a" * 5000}}),
        ("no file name", "post", "/process_video", {}),
        ("invalid UTF-8 to cancel", "post", "/cancel_process", {"data": b"\xff"}),
        ("invalid UTF-8 in process_status", "get", "/process_status", {"params": b"filename=%ff&format=json"}),
        ("an Accept header that parses oddly", "get", "/process_status",
         {"params": {"filename": "walk.mp4"}, "headers": {"Accept": "application/json;q=x, */*;q=0.\x01"}}),
        ("a bearer key that is not ASCII", "get", "/process_status",
         {"params": {"filename": "walk.mp4"}, "headers": {"Authorization": "Bearer \u00e9".encode("latin-1")}}),
    ]
    return cases


def test_inputs_schemathesis_does_not_generate(seeded):
    """Bytes that are not UTF-8, lone surrogates, odd content types, huge numbers, missing bodies."""
    live, ids = seeded
    spec = requests.get(f"{live.url}/openapi.json", timeout=10).json()
    privacy_key = {"X-API-Key": PRIVACY_KEY}
    for label, method, path, kwargs in _odd_requests(ids):
        if path in ("/process_video", "/cancel_process", "/process_status"):
            kwargs.setdefault("headers", {}).update({} if "Authorization" in kwargs.get("headers", {}) else privacy_key)
        response = requests.request(method, f"{live.url}{path}", timeout=10, **kwargs)
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
        _conforms(spec, path, method, response)
