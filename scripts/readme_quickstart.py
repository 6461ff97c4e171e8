"""Run the README's quickstart with an installed weightscope, as a new user would.

Every ``weightscope …`` line of the quickstart's shell blocks and every Python block of the
quickstart section are run with the interpreter and command of the environment given
(``--venv``), in an empty directory that holds only a link to the repository's
``examples/``: the source tree is not importable from there, so what runs is what was
installed. Used by ``.ci/run`` on a fresh virtual environment holding only the built wheel.

    python scripts/readme_quickstart.py --venv /path/to/venv
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def quickstart(readme: str) -> tuple[list[str], list[str]]:
    """The quickstart section's ``weightscope`` command lines and Python blocks."""
    section = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    commands, programs = [], []
    for language, body in BLOCK.findall(section):
        if language == "bash":
            commands += [line.split("#")[0].strip() for line in body.splitlines() if line.startswith("weightscope ")]
        elif language == "python":
            programs.append(body)
    return commands, programs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True, help="the environment weightscope is installed in")
    args = parser.parse_args()
    commands, programs = quickstart((ROOT / "README.md").read_text(encoding="utf-8"))
    if not commands or not programs:
        print("error: the README's quickstart has no weightscope command or no Python block", file=sys.stderr)
        return 2
    bin_dir = args.venv.resolve() / "bin"
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "examples").symlink_to(ROOT / "examples")
        env = {**os.environ, "WEIGHTSCOPE_CACHE_DIR": str(Path(work) / "cache")}
        where = [str(bin_dir / "python"), "-c", "import weightscope; print(weightscope.__file__)"]
        location = subprocess.run(where, cwd=work, env=env, check=True, capture_output=True, text=True).stdout.strip()
        if not location.startswith(str(args.venv.resolve())):
            print(f"error: weightscope imports from {location}, not from {args.venv}", file=sys.stderr)
            return 2
        for command in commands:
            argv = shlex.split(command)
            print(f"$ {command}", flush=True)
            subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=work, env=env, check=True)
        for program in programs:
            print(f">>> {program.strip()}", flush=True)
            subprocess.run([str(bin_dir / "python"), "-c", program], cwd=work, env=env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
