"""MkDocs hook (mkdocs.yml `hooks:`): the site's Changelog and Contributing pages are the
repository's own CHANGELOG.md and CONTRIBUTING.md, one text in two places.

A page whose whole text is `--8<-- "CHANGELOG.md"` becomes that root file, with its links,
written from the repository root where GitHub shows them, rewritten to the pages they point
at on the site: `docs/guide/safety.md` → `guide/safety.md`, `CONTRIBUTING.md` →
`contributing.md`. Any other root-relative link stays as written, so `mkdocs build --strict`
reports it. (pymdownx.snippets would include the file after this hook runs, too late to
rewrite its links.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: The root files the site includes, and the page each becomes.
ROOT_FILES = {"CHANGELOG.md": "changelog.md", "CONTRIBUTING.md": "contributing.md", "README.md": "index.md"}
INCLUDE = re.compile(r'--8<-- "([^"]+)"')
LINK = re.compile(r"(\]\()([^)\s#]+)")


def site_target(target: str) -> str:
    """Where a link written from the repository root points on the site."""
    if target.startswith("docs/"):
        return target.removeprefix("docs/")
    return ROOT_FILES.get(target, target)


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    include = INCLUDE.fullmatch(markdown.strip())
    if include is None or include.group(1) not in ROOT_FILES:
        return markdown
    root = Path(config.config_file_path).parent
    text = (root / include.group(1)).read_text(encoding="utf-8")
    return LINK.sub(lambda m: m.group(1) + site_target(m.group(2)), text)
