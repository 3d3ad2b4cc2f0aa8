"""The package layout's one import rule (issues 9 and 32), checked on the source itself.

`LAYERS` names every layer, top to bottom, and what lives in each. A module imports only from
layers below its own (or its own room); features never import each other; the web layer imports no
feature; only the media package imports PyAV and only the mongo package imports pymongo, and the
rest reach each through the package itself (`media_service.media`, `media_service.mongo`), never one
of its modules. The root doors (`video_processor`, `mongo_manager`) are for scripts and old callers:
no module inside the package imports a root file. A module the table does not place fails the test.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

FEATURES = ("content", "privacy", "annotation", "datasets")
MEDIA = "media_service.media"
MONGO = "media_service.mongo"

# Top to bottom. An entry is a module, or a package with all its modules; where two entries hold a
# module (`media_service.content` and `media_service.content.handler`), the longer one places it.
# A new module goes into this table, in the layer that says what it is.
LAYERS = (
    ("entry points", {"app", "wsgi", "worker", "dataset_processor", "dataset_creation_warm_start",
                      "gunicorn.conf"}),
    ("root doors", {"video_processor", "mongo_manager"}),  # for scripts and old callers, onto media/ and mongo/
    ("start-up", {"media_service.bootstrap"}),  # every entry point's settings, logging, key and services
    ("services", {"media_service.services"}),
    ("web and feature handlers", {"media_service.web", *(f"media_service.{feature}.handler" for feature in FEATURES)}),
    ("feature pipelines", {f"media_service.{feature}" for feature in FEATURES}),
    ("worker pool", {"media_service.worker_pool"}),
    ("detectors, media, mongo, storage", {"media_service.detectors", MEDIA, MONGO, "media_service.storage",
                                          "media_service.embedded_mongo"}),
    ("foundation", {"media_service", "media_service.contract", "media_service.config",
                    "media_service.config_options", "media_service.config_sections", "media_service.legacy_config",
                    "media_service.errors", "media_service.logging_setup", "media_service.paths",
                    "media_service.redact", "media_service.metrics", "media_service.signed_urls",
                    "media_service.platform_docs"}),
)
# The modules of these layers share one room: they may import each other.
ONE_ROOM = {"entry points", "foundation"}
# Only these packages may import these third-party packages: the one place for each concern.
OWNERS = {"av": MEDIA, "pymongo": MONGO}
# Packages the rest of the code reaches only through the package itself, never one of its modules.
DOORED = (MEDIA, MONGO)


def within(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def project_modules() -> dict[str, Path]:
    modules = {path.stem if path.parent == ROOT else
               ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
               for path in [*ROOT.glob("*.py"), *(ROOT / "media_service").rglob("*.py")]}
    modules["gunicorn.conf"] = modules.pop("gunicorn.conf", ROOT / "gunicorn.conf.py")
    return modules


def placed(module: str) -> tuple[int, str, str] | None:
    """(layer number, layer name, room) from `LAYERS` (0 = entry points); None when no entry holds it.
    A feature's modules share the feature's room, whatever their layer; a layer in ONE_ROOM is one
    room; any other module's room is the entry that places it."""
    holders = [(len(entry), number, name, entry) for number, (name, entries) in enumerate(LAYERS)
               for entry in entries if within(module, entry) and (entry != "media_service" or module == entry)]
    if not holders:
        return None
    _, number, name, entry = max(holders)
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "media_service" and parts[1] in FEATURES:
        return number, name, parts[1]
    return number, name, name if name in ONE_ROOM else entry


def imports_of(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from package import module` names a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found


def problem(module: str, imported: str, root_files: set[str]) -> str | None:
    """What is wrong with `module` importing `imported` (both placed), None when nothing is."""
    layer, layer_name, home = placed(module)
    their_layer, their_layer_name, their_home = placed(imported)
    if within(module, "media_service") and imported in root_files:
        return f"{module} imports {imported}: the package imports its own rooms, never a root file"
    if their_home == home:
        return None
    door = next((package for package in DOORED if within(imported, package) and imported != package), None)
    if door is not None:
        return f"{module} imports {imported}: the rest reach that package through {door} itself"
    if home in FEATURES and their_home in FEATURES:
        return f"{module} imports {imported}: features never import each other"
    if home == "media_service.web" and their_home in FEATURES:
        return f"{module} imports {imported}: the web layer imports no feature"
    if their_layer <= layer:
        return f"{module} ({layer_name}) imports {imported} ({their_layer_name}): imports point down only"
    return None


def violations() -> list[str]:
    modules = project_modules()
    known = set(modules)
    root_files = {module for module in known if not within(module, "media_service")}
    problems = [f"{module} is in no layer: add it to LAYERS in tests/test_layout.py"
                for module in sorted(known) if placed(module) is None]
    for module, path in sorted(modules.items()):
        for imported in sorted(imports_of(path, known)):
            top = imported.split(".")[0]
            if top in OWNERS and not within(module, OWNERS[top]):
                problems.append(f"{module} imports {top}: only {OWNERS[top]} may")
            if imported in known and placed(module) and placed(imported):
                found = problem(module, imported, root_files)
                if found:
                    problems.append(found)
    return problems


def test_imports_point_one_way():
    assert violations() == []


def test_every_entry_of_the_table_exists():
    modules = set(project_modules())
    stale = [entry for _, entries in LAYERS for entry in entries if not any(within(m, entry) for m in modules)]
    assert stale == []


def test_the_rule_catches_a_wrong_import(tmp_path, monkeypatch):
    """The checker itself: a feature importing another feature, a low layer importing a high one,
    PyAV outside the media package, the media package reached past itself, a package module importing
    a root door, and a module the table does not place."""
    bad = {"media_service.content.sneaky": "from media_service.privacy import blur\n",
           "media_service.detectors.upward": "import media_service.services\n",
           "media_service.privacy.own_decoder": "import av\n",
           "media_service.datasets.past_the_door": "from media_service.media.decode import rgb_frames\n",
           "media_service.media.upward": "from media_service.content import pipeline\n",
           "media_service.content.back_door": "import video_processor as vp\nfrom mongo_manager import utcnow\n",
           "media_service.web.feature_call": "from media_service.datasets import build\n",
           "media_service.unplaced": "\n"}
    real = project_modules()
    for name, source in bad.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "project_modules",
                        lambda: {**real, **{name: tmp_path / f"{name}.py" for name in bad}})
    found = "\n".join(violations())
    assert "media_service.content.sneaky imports media_service.privacy.blur: features never import each other" in found
    assert "media_service.detectors.upward (detectors, media, mongo, storage) imports media_service.services " \
           "(services): imports point down only" in found
    assert "media_service.privacy.own_decoder imports av: only media_service.media may" in found
    assert "media_service.datasets.past_the_door imports media_service.media.decode: the rest reach that " \
           "package through media_service.media itself" in found
    assert "media_service.media.upward (detectors, media, mongo, storage) imports media_service.content.pipeline " \
           "(feature pipelines): imports point down only" in found
    assert "media_service.content.back_door imports video_processor: the package imports its own rooms, never a " \
           "root file" in found
    assert "media_service.content.back_door imports mongo_manager: the package imports its own rooms" in found
    assert "media_service.web.feature_call imports media_service.datasets.build: the web layer imports no " \
           "feature" in found
    assert "media_service.unplaced is in no layer: add it to LAYERS in tests/test_layout.py" in found


def test_every_room_is_a_package_with_a_docstring():
    for name in ("web", *FEATURES, "detectors", "media", "mongo"):
        init = ROOT / "media_service" / name / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), init


@pytest.mark.parametrize("tool", ["ruff"])
def test_lint_is_clean(tool):
    result = subprocess.run([sys.executable, "-m", tool, "check", "--no-cache", str(ROOT)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


# Every public name `video_processor` had before the media package was split out of it (issue 33:
# `average_frame_rate` became `source_frame_rate`, which also says whether the rate was measured).
DOOR_NAMES = {"DISPLAY_ROTATION", "DecodeStats", "FrameLoss", "MP4_AUDIO", "MP4_LIKE", "MediaError", "MediaInfo",
              "Prefetcher", "REORDER_WINDOW", "ResumePoint", "SampledFrame", "Sampler", "TaskEncoder", "VideoCheck",
              "VideoFrame", "VideoRewriter", "source_frame_rate", "check_task_video", "decode_samples",
              "display_times", "fit_even", "frame_from_bgr", "frame_loss", "frame_to_rgb", "frames_to_skip",
              "legacy_next", "log", "output_size", "prepare_frame", "probe_video", "rgb_frames", "top_level_boxes",
              "yuv420p_array", "yuv420p_frame"}


def test_the_media_door_keeps_its_names():
    import video_processor as vp

    assert DOOR_NAMES - set(dir(vp)) == set()
    assert all(hasattr(vp, name) for name in vp.__all__)


# Every public name `mongo_manager` had before Node's collections moved into media_service/mongo/ (issue 32).
MONGO_DOOR_NAMES = {"Job", "JobStore", "LeaseLost", "MongoManager", "VideoBusy", "connect", "deadline", "either_form",
                    "is_slow_call", "is_unavailable", "utcnow"}


def test_the_mongo_door_keeps_its_names():
    import mongo_manager
    from media_service import mongo

    assert {name: getattr(mongo_manager, name, None) for name in MONGO_DOOR_NAMES} == \
           {name: getattr(mongo, name) for name in MONGO_DOOR_NAMES}
