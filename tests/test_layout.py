"""The package layout's one import rule (issue 9), checked on the source itself.

entry points -> services -> web and feature jobs -> feature pipelines -> the job pool ->
detectors, video_processor, storage, mongo_manager -> contract, config, logging, paths.
A module imports only from layers below its own (or its own room); features never import each
other; the web layer imports no feature; only video_processor imports PyAV and only mongo_manager
imports pymongo.
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
FOUNDATION = {"media_service", "media_service.contract", "media_service.config", "media_service.logging_setup",
              "media_service.paths", "media_service.redact", "media_service.metrics", "media_service.signed_urls",
              "media_service.legacy_config"}
# Only these may import these third-party packages (the one place for each concern).
OWNERS = {"av": {"video_processor"}, "pymongo": {"mongo_manager"}}


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
    if module == "media_service.services":
        return 1, "services"
    if parts[:2] == ["media_service", "web"]:
        return 2, "web"
    if len(parts) >= 2 and parts[0] == "media_service" and parts[1] in FEATURES:
        return (2 if parts[-1] == "job" else 3), parts[1]
    if module == "media_service.jobs":
        return 4, "jobs"
    if module in FOUNDATION:
        return 6, "foundation"
    if parts[:2] == ["media_service", "detectors"]:
        return 5, "detectors"
    return 5, module  # video_processor, mongo_manager, storage, embedded_mongo: one concern each


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
            if top in OWNERS and module not in OWNERS[top]:
                problems.append(f"{module} imports {top}: only {', '.join(sorted(OWNERS[top]))} may")
            if imported not in known:
                continue
            their_layer, their_home = room(imported)
            if their_home == home:
                continue
            if home in FEATURES and their_home in FEATURES:
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
    """The checker itself: a feature importing another feature, and a low layer importing a high one."""
    bad = {"media_service.content.sneaky": "from media_service.privacy import blur\n",
           "media_service.contract_extra": "import media_service.services\n"}
    real = project_modules()
    for name, source in bad.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "project_modules",
                        lambda: {**real, **{name: tmp_path / f"{name}.py" for name in bad}})
    found = "\n".join(violations())
    assert "features never import each other" in found and "imports point down only" in found


def test_every_room_is_a_package_with_a_docstring():
    for name in ("web", *FEATURES, "detectors"):
        init = ROOT / "media_service" / name / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), init


@pytest.mark.parametrize("tool", ["ruff"])
def test_lint_is_clean(tool):
    result = subprocess.run([sys.executable, "-m", tool, "check", "--no-cache", str(ROOT)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
