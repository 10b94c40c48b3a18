"""The package as published: declared dependencies cover the imports, the wheel's data files,
the licence, the typing marker and a README that renders on the package index."""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ravar"

# import name -> distribution name, where they differ
DISTRIBUTION_OF = {
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
}
# optional imports: import name -> the extra that installs it (None: an accelerator the code
# falls back from when it is missing). They must be imported inside functions only.
OPTIONAL = {"gradio": "app", "mamba_ssm": None, "wandb": "track"}


def normalise(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


@pytest.fixture(scope="module")
def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def third_party_imports() -> dict[str, list[tuple[str, bool]]]:
    """{top-level import name: [(file:line, at module level), ...]} over src/ravar."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "ravar" or top in sys.stdlib_module_names:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(top, []).append((where, id(node) in top_level))
    return found


def test_the_scan_sees_the_known_imports() -> None:
    found = third_party_imports()
    assert {"torch", "numpy", "PIL", "gradio", "tokenizers", "huggingface_hub"} <= set(found)
    assert any(top for _, top in found["torch"])  # module-level imports are recognised
    assert not any(top for _, top in found["gradio"])


def test_every_import_is_a_dependency_or_a_lazy_optional(project: dict) -> None:
    core = {requirement_name(r) for r in project["project"]["dependencies"]}
    extras = {
        extra: {requirement_name(r) for r in requirements}
        for extra, requirements in project["project"]["optional-dependencies"].items()
    }
    problems = []
    for name, places in third_party_imports().items():
        dist = normalise(DISTRIBUTION_OF.get(name, name))
        if dist in core:
            continue
        if name not in OPTIONAL:
            problems.append(f"{name} ({places[0][0]}): not a declared dependency")
            continue
        extra = OPTIONAL[name]
        if extra is not None and dist not in extras.get(extra, set()):
            problems.append(f"{name}: not in the [{extra}] extra")
        for where, top in places:
            if top:
                problems.append(f"{name} ({where}): optional but imported at module level")
    assert problems == []


def test_optional_packages_are_not_core_dependencies(project: dict) -> None:
    core = {requirement_name(r) for r in project["project"]["dependencies"]}
    assert not {normalise(DISTRIBUTION_OF.get(n, n)) for n in OPTIONAL} & core


def test_package_data_covers_every_non_python_file(project: dict) -> None:
    patterns = project["tool"]["setuptools"]["package-data"]["ravar"]
    files = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    assert "resources/ava_actions_v2.2.csv" in files
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []


def test_typed_marker_licence_and_urls(project: dict) -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["ravar"]
    meta = project["project"]
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text("utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    assert "[yyyy]" not in licence
    urls = meta["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Issues", "Changelog"}
    assert all(url.startswith(urls["Homepage"]) for url in urls.values())


def test_readme_links_and_images_are_absolute(project: dict) -> None:
    """The package index shows the README without the repository's files next to it."""
    targets = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text("utf-8"))
    assert targets, "no links found: the pattern no longer matches the README"
    relative = [t for t in targets if not re.match(r"https://|#", t)]
    assert relative == []
    home = project["project"]["urls"]["Homepage"]
    owner_repo = home.removeprefix("https://github.com/")
    for target in targets:
        assert target.startswith((home, f"https://raw.githubusercontent.com/{owner_repo}/"))
        if "/main/" in target:  # a file of the repository at its main branch
            assert (ROOT / target.split("/main/", 1)[1]).is_file(), target
