"""The README's quick start, followed as a new user follows it (issue 33), in a real headless Chromium.

The service runs as `./run.sh` runs it once its set-up is done (`python app.py`; tests/test_jobs.py
runs `./run.sh` itself): embedded defaults, no key configured (the key is read from
`./data/api_key`), no `APP_PUBLIC_URL`. The page is opened at `localhost` and at `127.0.0.1`, as the
README and a user's habit may have it, and every task video must play on both (readyState 2 or more,
currentTime moving). Real footage: OpenCV's sample AVIs from Debian's opencv-doc (an MPEG-4 AVI with
B-frames, the Cinepak AVI whose header claims 15 fps over 68 frames in 29.6 s, and an excerpt of the
street scene for auto-annotation). One browser session covers the whole first hour: browser tests
are slow on 2 cores.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.browser import js, wait_js
from tests.conftest import ROOT
from tests.helpers import clean_service_env, free_port, wait_until_ready

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
README = ROOT / "README.md"


def quick_start() -> str:
    """The README's quick start section, as a user reads it (lines joined)."""
    text = README.read_text()
    start = text.index("### Quick start")
    return " ".join(text[start:text.index("The same, from a shell", start)].split())


@pytest.fixture(scope="module")
def opencv_clips(tmp_path_factory) -> dict[str, Path]:
    needed = {name: OPENCV_DATA / name for name in ("Megamind.avi", "tree.avi", "vtest.avi")}
    missing = [str(path) for path in needed.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing}: `apt-get install opencv-doc` (run_tests.sh does)")
    # The street scene, its first 2 s (20 frames, stream copy): enough people, little detection time.
    street = tmp_path_factory.mktemp("street") / "street.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(needed["vtest.avi"]), "-frames:v", "20", "-c", "copy",
                    str(street)], check=True, capture_output=True)
    return {**needed, "street.avi": street}


@pytest.fixture(scope="module")
def as_run_sh_starts_it(tmp_path_factory):
    """The service with run.sh's defaults, on ports of its own, its data in a folder of its own."""
    home = tmp_path_factory.mktemp("quick-start")
    port = free_port()
    env = clean_service_env(PORT=str(port), MONGODB_EMBEDDED_PORT=str(free_port()), APP_DATA_DIR=str(home / "data"),
                            FOLDERS_CONTENT_BASE=str(home / "contents"), FOLDERS_CONTENT_PATH_BASE=str(home),
                            FOLDERS_TASK_BASE=str(home / "tasks"), STORAGE_URL=str(home / "storage"),
                            JOBS_POLL_SECONDS="0.1")
    log = home / "service.log"
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=open(log, "w"))
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process, timeout=120)
        yield {"port": port, "home": home, "log": log}
    finally:
        process.terminate()
        process.wait(60)


# -- the page, as a person uses it -------------------------------------------------------------------
def log_in(driver, base: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/jobs")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_js(driver, "return document.getElementById('jobs') !== null", what="the jobs page after login")


def try_it(driver, video: Path, rate: int, with_boxes: bool = False, labels: str | None = None) -> str:
    """Fill the try-it form as the README says and press its button; the status line once ended."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    steps = quick_start()
    button = re.search(r'press "([^"]+)"', steps).group(1)
    driver.find_element(By.ID, "try-video").send_keys(str(video))
    field = driver.find_element(By.ID, "try-rate")
    field.clear()
    field.send_keys(str(rate))
    choice = re.search(r'choose "([^"]+)" or "([^"]+)"', steps).group(2 if with_boxes else 1)
    Select(driver.find_element(By.ID, "try-type")).select_by_visible_text(choice)
    if labels is not None:
        box = driver.find_element(By.ID, "try-labels")
        box.clear()
        box.send_keys(labels)
    submit = driver.find_element(By.ID, "try-submit")
    assert submit.text == button, (submit.text, button)
    submit.click()
    return wait_js(driver, "const s = document.getElementById('try-status').textContent; "
                           "return /: (done|failed|cancelled)|Refused/.test(s) && s", timeout=240,
                   what="the try to end")


PLAYS = """
const videos = Array.from(document.querySelectorAll(arguments[0]));
return videos.length > 0 && videos.every(v => v.readyState >= 2 && v.videoWidth > 0) &&
       videos.map(v => [v.currentTime, v.currentSrc]);
"""


def assert_every_video_plays(driver, selector: str, base: str) -> int:
    """readyState 2 or more, then currentTime moving, for every video the selector finds."""
    js(driver, "document.querySelectorAll(arguments[0]).forEach(v => { v.muted = true; v.play(); });", selector)
    before = wait_js(driver, PLAYS, selector, timeout=60, what=f"every video of {selector} to load")
    for _, src in before:
        assert src.startswith(base + "/jobs/media/"), src  # this page's own origin, whatever its host
    wait_js(driver, "const vs = document.querySelectorAll(arguments[0]); "
                    "return Array.from(vs).every((v, i) => v.currentTime > arguments[1][i][0]);",
            selector, before, timeout=30, what=f"every video of {selector} to play")
    assert js(driver, "return Array.from(document.querySelectorAll(arguments[0])).every(v => v.error === null)",
              selector)
    return len(before)


def row_text(driver, upload_id: str, cell: str) -> str:
    return js(driver, "const r = document.querySelector(`tr[data-job-id=\"content:${arguments[0]}\"]`); "
                      "const c = r && r.querySelector(arguments[1]); return c ? c.textContent : '';", upload_id, cell)


def test_the_quick_start_on_localhost_and_127_0_0_1(browser, as_run_sh_starts_it, opencv_clips):
    from selenium.webdriver.common.by import By

    service = as_run_sh_starts_it
    steps = quick_start()
    assert "`./run.sh`, then open `http://localhost:8081/jobs`" in steps
    key_file = re.search(r"log in with the key in `\./(data/api_key)`", steps).group(1)
    key = (service["home"] / key_file).read_text().strip()
    port = service["port"]
    local, loopback = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    # The start-up log names the page to open.
    assert f"http://localhost:{port}/jobs" in service["log"].read_text()

    # 1. localhost: a real AVI (MPEG-4 with B-frames, 11.3 s) cut at 12 fps: 135 frames, 2 tasks.
    log_in(browser, local, key)
    status = try_it(browser, opencv_clips["Megamind.avi"], 12)
    assert ": done" in status and "2 tasks" in status, status
    assert_every_video_plays(browser, "#try-tasks video", local)
    upload_id = re.search(r"content:([0-9a-f]{24})", status).group(1)
    wait_js(browser, "return document.querySelector(`tr[data-job-id=\"content:${arguments[0]}\"]`)", upload_id,
            what="the try's row")
    assert re.search(r"Megamind-[0-9a-f]{8}\.avi", row_text(browser, upload_id, ".job .name"))
    assert row_text(browser, upload_id, ".job .project") == "Try it: Megamind.avi"
    # "tasks" opens the upload's page: every task video plays there, and the frames list names the
    # source frame each task frame came from (135 samples of 270 frames: 1, 3, 5, ...).
    browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="content:{upload_id}"] a.tasks').click()
    wait_js(browser, "return document.getElementById('tasks') !== null", what="the upload's page")
    assert assert_every_video_plays(browser, "#tasks video", local) == 2
    first_rows = wait_js(browser, "const rows = document.querySelectorAll('figure.task table.frames tbody tr'); "
                                  "return rows.length >= 135 && Array.from(rows).slice(0, 3).map(r => "
                                  "[r.querySelector('.frame').textContent, r.querySelector('.source').textContent])",
                         what="the frames lists")
    assert first_rows == [["1", "1"], ["2", "3"], ["3", "5"]], first_rows

    # 2. The same upload's page at 127.0.0.1 (another origin for the browser: log in again).
    browser.delete_all_cookies()
    log_in(browser, loopback, key)
    browser.get(f"{loopback}/jobs/uploads/{upload_id}")
    assert assert_every_video_plays(browser, "#tasks video", loopback) == 2

    # 3. Auto-annotation of real street footage with the labels the form proposes: boxes over the
    # task video on the upload page, and in the frames list.
    browser.get(f"{loopback}/jobs")
    proposed = browser.find_element(By.ID, "try-labels").get_attribute("value")
    assert "person" in proposed.split(", "), proposed
    status = try_it(browser, opencv_clips["street.avi"], 5, with_boxes=True)
    assert ": done" in status and "kept" in status, status
    street_upload = re.search(r"content:([0-9a-f]{24})", status).group(1)
    browser.get(f"{loopback}/jobs/uploads/{street_upload}")
    assert_every_video_plays(browser, "#tasks video", loopback)
    drawn = wait_js(browser, "const f = document.querySelector('figure.task'); const c = f.querySelector('canvas');"
                             "if (!c || !(Number(f.dataset.shownBoxes) > 0)) return null;"
                             "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                             "let lit = 0; for (let i = 3; i < px.length; i += 4) lit += px[i] > 0;"
                             "return [Number(f.dataset.shownBoxes), lit];", what="boxes drawn over the video")
    assert drawn[0] >= 3 and drawn[1] > 500, drawn  # pedestrians, outlined in the overlay
    boxes = js(browser, "return Array.from(document.querySelectorAll('figure.task table.frames tbody tr'), "
                        "r => [r.querySelector('.source').textContent, r.querySelector('.boxes').textContent])")
    assert [number for number, _ in boxes] == [str(n) for n in range(1, 21, 2)]  # 20 frames at 10 fps, taken at 5
    # each box with its label, score, track and place
    assert all(re.search(r"person 0\.\d\d #\d+ \(\d+, \d+, \d+×\d+\)", text) for _, text in boxes), boxes

    # 4. A project whose labels leave every detection out says why, where the user looks.
    browser.get(f"{loopback}/jobs")
    status = try_it(browser, opencv_clips["street.avi"], 5, with_boxes=True, labels="zebra")
    assert ": done" in status, status
    why = re.search(r"0 boxes kept: ([\d,]+) person(, [\d,]+ \w+)* not in the project's labels; add them or map "
                    r"them with \[Annotation\] label_map", status)
    assert why, status
    empty_upload = re.search(r"content:([0-9a-f]{24})", status).group(1)
    assert why.group(0) in wait_js(browser, "const r = document.querySelector(`tr[data-job-id=\"content:${arguments[0]}"
                                            "\"] .warning`); return r && r.textContent", empty_upload,
                                   what="the row's warning")
    browser.get(f"{loopback}/jobs/uploads/{empty_upload}")
    assert why.group(0) in browser.find_element(By.ID, "annotation-warning").text

    # 5. A frame rate above the Cinepak AVI's measured rate (68 frames over 29.6 s, its header says
    # 15 fps) is refused at once, saying which rate was used, and nothing of the try is left.
    browser.get(f"{loopback}/jobs")
    status = try_it(browser, opencv_clips["tree.avi"], 5)
    assert "Refused (400)" in status and "(2.27 fps, measured from its frames' timestamps; its header says 15 fps)" \
        in status, status
    contents = service["home"] / "contents" / "uploads"
    assert list(contents.rglob("tree-*")) == [] and len(list(contents.iterdir())) == 3  # the three tries before

    # 6. A task video that cannot be loaded says so in the page, with the reason.
    video_file = next((service["home"] / "storage").rglob("task-1-*.mp4"))
    video_file.unlink()
    browser.get(f"{loopback}/jobs/uploads/{upload_id}")
    reason = wait_js(browser, "const e = document.querySelector('figure.task[data-task^=\"task-1-\"] .video-error');"
                              "return e && !e.hidden && e.textContent", what="the failed video's message")
    assert "could not be played" in reason and "404" in reason, reason
    assert requests.get(f"{loopback}/favicon.ico", timeout=10).status_code == 200
