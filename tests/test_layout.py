"""The package layout's one import rule (issue 9), checked on the source itself.

entry points -> services -> web and feature jobs -> feature pipelines -> the job pool ->
detectors, video_processor (the media package's door), storage, mongo_manager (the mongo package's
door) -> contract, config, errors, logging, paths. A module imports only from layers below its own
(or its own room); features never import each other; the web layer imports no feature; only the
media package imports PyAV and only the mongo package (with mongo_manager) imports pymongo, and the
rest reach each through its door.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

ENTRY_POINTS = {"app", "wsgi", "worker", "dataset_processor", "dataset_creation_warm_start", "gunicorn.conf"}
FEATURES = ("content", "privacy", "annotation", "datasets")
FOUNDATION = {"media_service", "media_service.contract", "media_service.config", "media_service.config_options",
              "media_service.config_sections", "media_service.errors", "media_service.logging_setup",
              "media_service.paths", "media_service.redact", "media_service.metrics", "media_service.signed_urls",
              "media_service.legacy_config"}
MEDIA = "media_service.media"
MONGO = "media_service.mongo"
# Only these (a module, or a package with all its modules) may import these third-party packages:
# the one place for each concern.
OWNERS = {"av": {MEDIA}, "pymongo": {MONGO, "mongo_manager"}}
# A package the rest of the code reaches only through its door, a module in the same room.
DOORS = {MEDIA: "video_processor", MONGO: "mongo_manager"}


def within(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def project_modules() -> dict[str, Path]:
    modules = {path.stem if path.parent == ROOT else
               ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
               for path in [*ROOT.glob("*.py"), *(ROOT / "media_service").rglob("*.py")]}
    return modules


def room(module: str) -> tuple[int, str]:
    """(layer, room): lower layers are imported by higher ones (0 = entry points)."""
    parts = module.split(".")
    if module in ENTRY_POINTS:
        return 0, "entry"
    if module in ("media_service.services", "media_service.bootstrap"):
        return 1, "services"
    if parts[:2] == ["media_service", "web"]:
        return 2, "web"
    if len(parts) >= 2 and parts[0] == "media_service" and parts[1] in FEATURES:
        return (2 if parts[-1] == "handler" else 3), parts[1]
    if module == "media_service.worker_pool":
        return 4, "jobs"
    if module in FOUNDATION:
        return 6, "foundation"
    if parts[:2] == ["media_service", "detectors"]:
        return 5, "detectors"
    for package, door in DOORS.items():
        if within(module, package) or module == door:
            return 5, package  # a package and its door: video_processor, mongo_manager
    return 5, module  # storage, embedded_mongo: one concern each


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


def violations() -> list[str]:
    modules = project_modules()
    modules["gunicorn.conf"] = ROOT / "gunicorn.conf.py"
    known = set(modules)
    problems = []
    for module, path in sorted(modules.items()):
        layer, home = room(module)
        for imported in sorted(imports_of(path, known)):
            top = imported.split(".")[0]
            if top in OWNERS and not any(within(module, owner) for owner in OWNERS[top]):
                problems.append(f"{module} imports {top}: only {', '.join(sorted(OWNERS[top]))} may")
            if imported not in known:
                continue
            their_layer, their_home = room(imported)
            if their_home == home:
                continue
            door = next((door for package, door in DOORS.items() if within(imported, package)), None)
            if door is not None:
                problems.append(f"{module} imports {imported}: the rest reach that package through {door}")
            elif home in FEATURES and their_home in FEATURES:
                problems.append(f"{module} imports {imported}: features never import each other")
            elif home == "web" and their_home in FEATURES:
                problems.append(f"{module} imports {imported}: the web layer only validates, queues and reads state")
            elif their_layer <= layer:
                problems.append(f"{module} (layer {layer}) imports {imported} (layer {their_layer}): "
                                "imports point down only")
    return problems


def test_imports_point_one_way():
    assert violations() == []


def test_the_rule_catches_a_wrong_import(tmp_path, monkeypatch):
    """The checker itself: a feature importing another feature, a low layer importing a high one,
    PyAV outside the media package, and the media package reached past its door."""
    bad = {"media_service.content.sneaky": "from media_service.privacy import blur\n",
           "media_service.contract_extra": "import media_service.services\n",
           "media_service.privacy.own_decoder": "import av\n",
           "media_service.datasets.past_the_door": "from media_service.media.decode import rgb_frames\n",
           "media_service.media.upward": "from media_service.content import pipeline\n"}
    real = project_modules()
    for name, source in bad.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "project_modules",
                        lambda: {**real, **{name: tmp_path / f"{name}.py" for name in bad}})
    found = "\n".join(violations())
    assert "features never import each other" in found and "imports point down only" in found
    assert "media_service.privacy.own_decoder imports av: only media_service.media may" in found
    assert "media_service.datasets.past_the_door imports media_service.media.decode: the rest reach that " \
           "package through video_processor" in found
    assert "media_service.media.upward (layer 5) imports media_service.content.pipeline (layer 3)" in found


def test_every_room_is_a_package_with_a_docstring():
    for name in ("web", *FEATURES, "detectors", "media"):
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
