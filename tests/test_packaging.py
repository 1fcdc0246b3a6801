"""Packaging: pyproject.toml and requirements*.txt agree, and the run-time set stays lean."""

import re
import tomllib
from pathlib import Path

from conceptkd_core.vocabulary import DEFAULT_VOCABULARY, load_vocabulary

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].replace(" ", "") for line in lines if line.split("#")[0].strip()]


def project_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_txt_is_the_projects_runtime_set():
    """Streamlit Community Cloud installs requirements.txt; `pip install .` reads pyproject.toml."""
    dependencies = [d.replace(" ", "") for d in PYPROJECT["project"]["dependencies"]]
    assert requirement_lines("requirements.txt") == dependencies


def test_runtime_set_has_no_test_scale_out_or_plot_packages():
    names = {project_name(line) for line in requirement_lines("requirements.txt")}
    assert not names & {"pytest", "playwright", "ray", "matplotlib", "ruff"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {project_name(r) for r in extras["scale"]} == {"ray", "matplotlib"}
    assert {project_name(r) for r in extras["dev"]} >= {"pytest", "playwright", "ruff"}


def test_dev_requirements_install_the_project_with_its_extras():
    lines = requirement_lines("requirements-dev.txt")
    assert "-rrequirements.txt" in lines
    assert "-e.[scale,dev]" in lines


def test_default_vocabulary_ships_inside_the_package():
    package = ROOT / "conceptkd_core"
    assert DEFAULT_VOCABULARY.parent.parent == package
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["conceptkd_core"]
    assert any(DEFAULT_VOCABULARY.relative_to(package).match(g) for g in globs)
    assert len(load_vocabulary()) == 571
    assert not (ROOT / "data" / "vocabulary").exists(), "one copy of the word lists, inside the package"
