"""The README and the documentation site: short front page, links that resolve, install
lines that name this project's distribution, and text about the software only.

`mkdocs build --strict` (in `.ci/run`) checks the site's own links and anchors; these tests
also cover the README, CONTRIBUTING.md and CHANGELOG.md, which GitHub shows from the
repository root, and run without mkdocs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import tomllib

from weightscope._version import DISTRIBUTION
from weightscope.errors import install_hint

ROOT = Path(__file__).resolve().parent.parent
FRONT = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [m.group(1) for m in LINK.finditer(text)]


def _slug(heading: str) -> str:
    """GitHub's and Python-Markdown's anchor of a heading (the ASCII cases we write)."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("page", FRONT + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        if page.read_text(encoding="utf-8").startswith("--8<--"):
            continue  # the page is a root file (scripts/mkdocs_hooks.py), its links checked there
        file = (page.parent / target).resolve() if target else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file)):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: links that do not resolve: {broken}"


def test_a_broken_link_is_found(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](#title) [gone](missing.md) [bad](#nowhere)\n```\n[code](x.md)\n```\n")
    links = _links(page)
    assert links == ["#title", "missing.md", "#nowhere"]
    assert "title" in _anchors(page) and "nowhere" not in _anchors(page)


def test_the_distribution_is_the_one_every_hint_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "weightscope-esd"
    assert project["scripts"] == {"weightscope": "weightscope.cli:main"}
    for extra in ("torch", "plot", "vectors", "gguf", "hub", "pandas", "ray", "full", "docs"):
        assert extra in project["optional-dependencies"]
    assert install_hint("gguf") == "pip install 'weightscope-esd[gguf]'"
    extras = project["optional-dependencies"]
    own = [r for requirements in extras.values() for r in requirements if r.lower().startswith("weightscope")]
    assert own and all(r.startswith(f"{DISTRIBUTION}[") for r in own), (
        "an extra that includes others names this distribution"
    )


def _install_lines() -> list[tuple[str, str]]:
    # CHANGELOG.md is left out: its history names the old, wrong install line on purpose.
    files = [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        *DOCS,
        *(ROOT / "weightscope").rglob("*.py"),
        ROOT / "action.yml",
    ]
    found = []
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if "pip install" in line:
                found.append((str(path.relative_to(ROOT)), line))
    return found


def test_no_install_line_names_another_projects_distribution():
    """The package index's `weightscope` is a different project with the same import name."""
    lines = _install_lines()
    assert lines, "the docs say how to install"
    wrong = [
        (path, line) for path, line in lines if re.search(r"""pip install (-\S+ )*['"]?weightscope(?!-esd)\b""", line)
    ]
    assert not wrong


ORGANISATION = re.compile(
    r"\bsessions?\b|\blent\b|other jobs|first attempt|tried, measured|\breverted\b|previous release", re.I
)


def test_the_docs_speak_of_the_software_only():
    """How the work was organised is no part of the documentation; history is the changelog's."""
    offending = [
        (str(path.relative_to(ROOT)), line.strip())
        for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *DOCS]
        for line in path.read_text(encoding="utf-8").splitlines()
        if ORGANISATION.search(line)
    ]
    assert not offending


def test_the_root_files_links_resolve_on_the_site_too():
    """CHANGELOG.md and CONTRIBUTING.md are also site pages (scripts/mkdocs_hooks.py): a
    link from them must reach a page of the site, not only a file of the repository."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    assert (
        hooks.site_target("docs/guide/safety.md") == "guide/safety.md"
        and hooks.site_target("CHANGELOG.md") == "changelog.md"
    )
    for page in (ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md"):
        relative = [link.partition("#")[0] for link in _links(page) if not re.match(r"[a-z]+:|#", link)]
        missing = [link for link in relative if not (ROOT / "docs" / hooks.site_target(link)).exists()]
        assert not missing, f"{page.name}: links with no page on the site: {missing}"
