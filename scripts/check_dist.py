"""Check what `python -m build` made: the wheel carries the package and nothing else, the
sdist the whole source.

The wheel must hold every module of `weightscope/` (a module left out fails at import on a
user's machine, never in the source tree) and no tests, fixtures, examples or docs; the
sdist must hold what its tests read. Used by `.ci/run` after the build.

    python scripts/check_dist.py dist/
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What the sdist must carry beside the package: the tests and the example run they read.
SDIST_NEEDS = (
    "LICENSE",
    "README.md",
    "tests/conftest.py",
    "tests/data",
    "examples/runs/tiny-lm/step-1500/model.safetensors",
    "docs/index.md",
    "mkdocs.yml",
)


def package_modules() -> set[str]:
    return {str(path.relative_to(ROOT)) for path in (ROOT / "weightscope").rglob("*.py")}


def check_wheel(wheel: Path) -> list[str]:
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = [f"wheel lacks {name}" for name in sorted(package_modules() - names)]
    stray = [name for name in names if not name.startswith(("weightscope/", "weightscope_esd-"))]
    problems += [f"wheel carries {name}" for name in sorted(stray)]
    if not any(
        name.endswith("entry_points.txt") and b"weightscope = weightscope.cli:main" in zipfile.ZipFile(wheel).read(name)
        for name in names
    ):
        problems.append("wheel has no `weightscope` command")
    return problems


def check_sdist(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = package_modules() | set(SDIST_NEEDS)
    return [f"sdist lacks {name}" for name in sorted(wanted - names)]


def main(dist: Path) -> int:
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"error: {dist} should hold one wheel and one sdist, not {wheels + sdists}", file=sys.stderr)
        return 2
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"{wheels[0].name}: the package only; {sdists[0].name}: the whole source")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist"))
