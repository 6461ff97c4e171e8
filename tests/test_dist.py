"""The checks `.ci/run` makes on the built package (scripts/check_dist.py) and the README
quickstart it runs from the wheel (scripts/readme_quickstart.py) find what they must."""

from __future__ import annotations

import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_dist = _script("check_dist")
readme_quickstart = _script("readme_quickstart")
ENTRY = "[console_scripts]\nweightscope = weightscope.cli:main\n"


def _wheel(path: Path, extra: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for module in check_dist.package_modules():
            wheel.writestr(module, "")
        wheel.writestr("weightscope_esd-0.1.0.dist-info/entry_points.txt", ENTRY)
        for name, text in extra.items():
            wheel.writestr(name, text)
    return path


def test_a_complete_wheel_passes(tmp_path: Path):
    assert check_dist.check_wheel(_wheel(tmp_path / "ok.whl", {})) == []


def test_tests_in_the_wheel_or_a_missing_module_fail(tmp_path: Path):
    stray = check_dist.check_wheel(_wheel(tmp_path / "tests.whl", {"tests/conftest.py": ""}))
    assert stray == ["wheel carries tests/conftest.py"]
    with zipfile.ZipFile(tmp_path / "short.whl", "w") as wheel:
        wheel.writestr("weightscope/__init__.py", "")
    short = check_dist.check_wheel(tmp_path / "short.whl")
    assert "wheel lacks weightscope/cli/app.py" in short and "wheel has no `weightscope` command" in short


def test_an_sdist_without_the_example_run_fails(tmp_path: Path):
    sdist = tmp_path / "weightscope_esd-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in [
            *check_dist.package_modules(),
            "LICENSE",
            "README.md",
            "tests/conftest.py",
            "tests/data",
            "docs/index.md",
            "mkdocs.yml",
        ]:
            info = tarfile.TarInfo(f"weightscope_esd-0.1.0/{name}")
            archive.addfile(info, io.BytesIO(b""))
    assert check_dist.check_sdist(sdist) == ["sdist lacks examples/runs/tiny-lm/step-1500/model.safetensors"]


def test_the_readme_quickstart_is_found():
    commands, programs = readme_quickstart.quickstart((ROOT / "README.md").read_text(encoding="utf-8"))
    assert commands == ["weightscope analyze examples/runs/tiny-lm/step-1500/model.safetensors"]
    assert len(programs) == 1 and "weightscope.analyze(" in programs[0]
