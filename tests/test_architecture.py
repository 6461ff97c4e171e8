"""The package's layering, as a test: data flows one way, so imports only go down.

Every module of `weightscope` has a level (`LEVELS`, by longest matching prefix). A module
may import its own level or lower, never higher, and the import graph has no cycle.
`linalg` and `stats` import nothing of the package but `errors` and each other's lower
layer (stats may use linalg). Imports under ``if TYPE_CHECKING:`` are type hints, not
dependencies, and are ignored; function-level (lazy) imports count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "weightscope"

#: Lower numbers are lower levels (docs/architecture.md).
LEVELS = {
    "weightscope._version": 0,
    "weightscope.errors": 0,
    "weightscope.io": 0,
    "weightscope.patterns": 0,
    "weightscope.config": 1,
    "weightscope.vocabulary": 1,
    "weightscope.linalg": 1,
    "weightscope.checkpoint": 2,
    "weightscope.stats": 2,
    "weightscope.options": 3,
    "weightscope.checks": 4,
    "weightscope.report": 5,
    "weightscope.summary": 6,
    "weightscope.execution": 6,
    "weightscope.analysis": 7,
    "weightscope.commands": 9,
    "weightscope.render": 10,
    "weightscope.cli": 11,
    "weightscope.integrations": 11,
    "weightscope.__main__": 12,
}

#: Modules whose level is not a prefix rule: the package's lazy public API (`__init__`)
#: re-exports from any level, so it sits above everything but is named exactly.
EXACT_LEVELS = {"weightscope": 12}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def level(module: str) -> int | None:
    """The module's level: its exact entry, else its longest matching prefix; None if none."""
    if module in EXACT_LEVELS:
        return EXACT_LEVELS[module]
    prefixes = [prefix for prefix in LEVELS if module == prefix or module.startswith(prefix + ".")]
    return LEVELS[max(prefixes, key=len)] if prefixes else None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """The weightscope modules ``path`` imports at run time (relative imports resolved)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("weightscope"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("weightscope"):
                found.add(target)
                # `from weightscope.x import y` where y is a submodule
                for alias in node.names:
                    if (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).with_suffix(".py").exists():
                        found.add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def modules_without_a_level(modules) -> list[str]:
    return [module for module in modules if level(module) is None]


def test_every_module_has_a_level():
    assert modules_without_a_level(graph()) == []


def test_a_module_without_a_level_is_caught():
    """A new top-level leaf (weightscope/helpers.py) matches no prefix and no exact entry."""
    assert modules_without_a_level(["weightscope.helpers", "weightscope.analysis.pipeline"]) == ["weightscope.helpers"]


#: Longest module, in lines: a file past it glues several ideas together and is cut at its
#: seams (checks.py at 883 lines and commands/gate.py at 972 became packages).
MAX_MODULE_LINES = 600


def modules_too_long(paths, limit: int = MAX_MODULE_LINES) -> list[str]:
    return [f"{path.name}: {count}" for path in paths if (count := len(path.read_text().splitlines())) > limit]


def test_no_module_is_longer_than_the_limit():
    assert modules_too_long(sorted(PACKAGE.rglob("*.py"))) == []


def test_a_long_module_is_caught(tmp_path):
    short, long = tmp_path / "short.py", tmp_path / "long.py"
    short.write_text("x = 1\n" * MAX_MODULE_LINES)
    long.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert modules_too_long([short, long]) == [f"long.py: {MAX_MODULE_LINES + 1}"]


def test_imports_never_go_up_a_level():
    upward = [
        f"{module} (level {level(module)}) imports {target} (level {level(target)})"
        for module, targets in graph().items()
        for target in targets
        if target != "weightscope" and level(target) > level(module)
    ]
    assert not upward, "\n".join(upward)


def test_numerics_and_statistics_import_nothing_above_them():
    allowed = {
        "linalg": ("weightscope.linalg", "weightscope.errors"),
        "stats": ("weightscope.stats", "weightscope.linalg", "weightscope.errors"),
    }
    for module, targets in graph().items():
        for folder, prefixes in allowed.items():
            if module.startswith(f"weightscope.{folder}"):
                bad = [t for t in targets if not t.startswith(prefixes)]
                assert not bad, f"{module} imports {bad}"


def test_the_import_graph_has_no_cycle():
    edges = {module: {t for t in targets if t != "weightscope"} for module, targets in graph().items()}
    # A package's __init__ importing its own submodules is not a cycle of design.
    state: dict[str, int] = {}
    cycle: list[str] = []

    def walk(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycle.extend([*path[path.index(nxt) :], nxt])
                return True
            if state.get(nxt) is None and walk(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for start in edges:
        if state.get(start) is None and walk(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


# --- one alpha band ------------------------------------------------------------------------

#: The numbers of the HTSR alpha band: alpha_low, alpha_high and alpha_random of
#: `weightscope.config.Thresholds`, the one place they are defined.
BAND_NUMBERS = {2, 6, 8}
#: A band written out as text ("2–6", "alpha > 8", "≤ 6"), as a label or a message.
BAND_TEXT = re.compile(r"\b[268]\s*[–-]\s*[268]\b|(?:[<>≤≥]|&[lg]t;)\s*[268](?![\d.])")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def band_definitions(package: Path = PACKAGE) -> list[str]:
    """Places outside config.py that define the alpha band again."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path) if package == PACKAGE else path.stem
        if module.endswith("config"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstring_nodes(tree)
        where = f"{path.relative_to(package.parent)}"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for name in (t.id for t in targets if isinstance(t, ast.Name)):
                    constant = isinstance(node.value, ast.Constant) and node.value.value in BAND_NUMBERS
                    if name in ("ALPHA_LOW", "ALPHA_HIGH") or ("ALPHA" in name and name.isupper() and constant):
                        found.append(f"{where}:{node.lineno} defines {name}")
        if not (module.endswith("summary") or ".render" in module or "render" in path.parts):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):  # alpha < 2, (alphas > 6).sum(), s.alpha_median <= 8
                operands = (node.left, *node.comparators)
                numbers = [o.value for o in operands if isinstance(o, ast.Constant) and not isinstance(o.value, bool)]
                if set(numbers) & BAND_NUMBERS and any("alpha" in ast.unparse(o).lower() for o in operands):
                    found.append(f"{where}:{node.lineno} compares alpha with {numbers}")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and BAND_TEXT.search(node.value)
            ):
                found.append(f"{where}:{node.lineno} writes the band as text: {node.value!r}")
    return found


def test_the_alpha_band_is_defined_once():
    """Views and the summary read the band from the report's Thresholds, nowhere else:
    with alpha_high=2.5 a second definition would count, colour or draw with 6."""
    assert band_definitions() == []


def test_a_second_alpha_band_definition_is_caught(tmp_path):
    planted = tmp_path / "weightscope"
    (planted / "render").mkdir(parents=True)
    (planted / "render" / "style.py").write_text(
        'ALPHA_HIGH = 6.0\ndef band(alpha):\n    return "high" if alpha > 6 else "ok"\n'
    )
    (planted / "summary.py").write_text('LABEL = "alpha 2–6"\n')
    found = band_definitions(planted)
    assert len(found) == 3, found


# --- one vocabulary of findings, one "has a reading" ------------------------------------------

from weightscope import vocabulary  # noqa: E402  (the names the guard looks for)

#: Every verdict name, as this version and older reports spell it.
VOCABULARY_VERDICTS = set(vocabulary.VERDICTS) | set(vocabulary.RENAMED)


def vocabulary_copies(package: Path = PACKAGE) -> list[str]:
    """Places outside vocabulary.py that spell out a collection of verdict names (a tuple,
    list, set or dict literal holding two or more of them): a second table of names,
    precedence, severity, colours or markers that would drift from `vocabulary`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.stem == "vocabulary":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            items = (
                node.keys
                if isinstance(node, ast.Dict)
                else node.elts
                if isinstance(node, (ast.Tuple, ast.List, ast.Set))
                else []
            )
            names = [
                item.value for item in items if isinstance(item, ast.Constant) and item.value in VOCABULARY_VERDICTS
            ]
            if len(set(names)) >= 2:
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} lists verdicts {names}")
    return found


def reading_definitions(package: Path = PACKAGE) -> list[str]:
    """Places outside report.py that decide whether a layer's alpha has a reading on their
    own: reading ``fit_trust.trusted``, defining a predicate named like one
    (``is_trusted``, ``_trusted``, ``has_reading``), or testing ``.confidence`` against
    None. `LayerResult.has_reading` is the one definition."""
    found = []
    predicate = re.compile(r"trusted|has_reading|is_read", re.IGNORECASE)
    for path in sorted(package.rglob("*.py")):
        if path.stem == "report":
            continue
        where = path.relative_to(package.parent)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "trusted"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "fit_trust"
            ):
                found.append(f"{where}:{node.lineno} reads fit_trust.trusted")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and predicate.search(node.name):
                found.append(f"{where}:{node.lineno} defines {node.name}()")
            if isinstance(node, ast.Compare):
                operands = (node.left, *node.comparators)
                confidence = any(isinstance(o, ast.Attribute) and o.attr == "confidence" for o in operands)
                if confidence and any(isinstance(o, ast.Constant) and o.value is None for o in operands):
                    found.append(f"{where}:{node.lineno} tests .confidence against None")
    return found


# --- one runner, one definition of each vocabulary ---------------------------------------
#
# Each guard scans a package tree (the real one, or a planted copy in a test) and returns
# what it found in the wrong place, as "path:line what"; the real tree must give [] and a
# planted second copy must be found.


def _modules(package: Path) -> list[tuple[str, Path, ast.AST]]:
    """(module name, path, tree) of every module under ``package`` (a planted tree too)."""
    return [
        (".".join(path.relative_to(package.parent).with_suffix("").parts), path, ast.parse(path.read_text(), str(path)))
        for path in sorted(package.rglob("*.py"))
    ]


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


#: The runner, and the two engines only it drives.
RUNNER = "weightscope.execution.runner"
ENGINES = {"pipelined": "weightscope.execution.schedule", "run_tasks": "weightscope.execution.cluster"}


def runner_forks(package: Path = PACKAGE) -> list[str]:
    """Places outside the runner that choose between local threads and Ray (a comparison
    of an executor with "ray") or drive either engine themselves."""
    found = []
    for module, path, tree in _modules(package):
        if module == RUNNER:
            continue
        where = path.relative_to(package.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) in ENGINES and module != ENGINES[_called(node)]:
                found.append(f"{where}:{node.lineno} calls {_called(node)}")
            if isinstance(node, ast.Compare):
                operands = (node.left, *node.comparators)
                if any(isinstance(o, ast.Constant) and o.value == "ray" for o in operands) and any(
                    "executor" in ast.unparse(o) for o in operands
                ):
                    found.append(f"{where}:{node.lineno} chooses the executor")
    return found


def test_one_runner_chooses_local_threads_or_ray():
    """analyze's layers and compare's pairs both go through `execution.runner.run_batches`."""
    assert runner_forks() == []


def test_a_second_runner_is_caught(tmp_path):
    planted = tmp_path / "weightscope"
    (planted / "commands").mkdir(parents=True)
    (planted / "commands" / "fork.py").write_text(
        "def pairs(execution, pairs, ray):\n"
        "    if execution.executor == 'ray':\n"
        "        return run_tasks(ray, compare_task, pairs)\n"
        "    return pipelined(pairs, load, compute)\n"
    )
    assert len(runner_forks(planted)) == 3, runner_forks(planted)


#: A class for how attention splits into heads (HeadLayout, HeadSource, HeadCounts, …).
HEAD_TYPE = re.compile(r"^Heads?(Layout|Source|Counts?|Split|Config|Info)$")
HEAD_HOME = "weightscope.checkpoint.heads"


def head_layout_types(package: Path = PACKAGE) -> list[str]:
    """Every class that describes a head layout, as "module.Class"."""
    return [
        f"{module}.{node.name}"
        for module, _, tree in _modules(package)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and HEAD_TYPE.match(node.name)
    ]


def test_one_head_layout_type():
    assert head_layout_types() == [f"{HEAD_HOME}.HeadLayout"]


def test_a_second_head_layout_type_is_caught(tmp_path):
    planted = tmp_path / "weightscope"
    (planted / "stats").mkdir(parents=True)
    (planted / "stats" / "attention.py").write_text("class HeadLayout:\n    heads: int\n")
    (planted / "measures.py").write_text("class HeadSource:\n    heads: int\n")
    assert head_layout_types(planted) == ["weightscope.measures.HeadSource", "weightscope.stats.attention.HeadLayout"]


#: Checkpoint file suffixes: listed by the readers (`checkpoint.files.FORMAT_SUFFIXES`) only.
CHECKPOINT_SUFFIXES = {".safetensors", ".gguf", ".npz", ".bin", ".pt", ".pth", ".ckpt"}
FORMATS_HOME = "weightscope.checkpoint.files"
#: Text formats of results: each result type's registry (`render.formats.Formats`) only.
TEXT_FORMATS = {"json", "csv", "md", "github", "junit"}


def format_lists(package: Path = PACKAGE) -> list[str]:
    """Second copies of a format vocabulary: a collection of checkpoint suffixes outside
    the readers' list, a mapping of output formats that is not a registry (an assignment
    to a ``*_FORMATS`` annotated as ``Formats``), and a result's output JSON (indented
    by 2) written outside `render.formats.json_text`."""
    found = []
    for module, path, tree in _modules(package):
        where = path.relative_to(package.parent)
        registries = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign) and ast.unparse(node.annotation) == "Formats" and node.value is not None
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.Set, ast.List, ast.Tuple)) and module != FORMATS_HOME:
                strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(strings & CHECKPOINT_SUFFIXES) >= 2:
                    found.append(f"{where}:{node.lineno} lists checkpoint suffixes")
            if isinstance(node, ast.Dict) and id(node) not in registries:
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                keys |= {k.attr for k in node.keys if isinstance(k, ast.Attribute)}  # OutputFormat.json: …
                if len(keys & TEXT_FORMATS) >= 2:
                    found.append(f"{where}:{node.lineno} maps output formats outside a registry")
            if (
                isinstance(node, ast.Call)
                and _called(node) == "dumps"
                and node.args
                and "to_dict()" in ast.unparse(node.args[0])
                and not module.endswith("render.formats")
                and any(k.arg == "indent" and ast.unparse(k.value) == "2" for k in node.keywords)
            ):
                found.append(
                    f"{where}:{node.lineno} writes a result's JSON itself"
                )  # (the cache keeps its own compact form)
    return found


def test_one_definition_of_each_format_vocabulary():
    assert format_lists() == []


def test_a_second_format_vocabulary_is_caught(tmp_path):
    planted = tmp_path / "weightscope"
    (planted / "commands").mkdir(parents=True)
    (planted / "commands" / "trend.py").write_text('CHECKPOINT_SUFFIXES = frozenset({".safetensors", ".pt"})\n')
    (planted / "cli").mkdir()
    (planted / "cli" / "compare.py").write_text(
        "import json\n"
        "def show(result):\n"
        "    texts = {OutputFormat.json: lambda: json.dumps(result.to_dict(), indent=2), OutputFormat.csv: to_csv}\n"
    )
    (planted / "render").mkdir()
    (planted / "render" / "views.py").write_text(
        'FORMATS: Formats = {"json": json_text, "csv": to_csv}\n'
    )  # a registry
    found = format_lists(planted)
    assert len(found) == 3 and not any("views.py" in f for f in found), found


COLUMNS_HOME = "weightscope.render.columns"
#: Names shared by every table of layers or of changes (identity, verdict): not a sign of a
#: second list of the report's layer columns by themselves.
_COMMON_COLUMNS = {"block", "blk", "name", "layer", "kind", "shape", "verdict"}


def _column_names() -> set[str]:
    from weightscope.render.columns import LAYER_COLUMNS

    names = {name for column in LAYER_COLUMNS for name in (column.field, column.title, column.key) if name}
    return names - _COMMON_COLUMNS


def _template(node: ast.JoinedStr) -> str:
    """An f-string as a header template, each replacement field written ``{}``
    (``f"alpha@{label}"`` → ``alpha@{}``)."""
    return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)


def _names(node: ast.AST) -> set[str]:
    """The column names a string gives: a constant, an f-string's template, and the cells
    of a markdown row (``"| layer | kind | "`` → ``layer``, ``kind``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = _template(node)
    else:
        return set()
    return {text, *(cell.strip() for cell in text.split("|"))} if "|" in text else {text}


def _listed(node: ast.AST) -> set[str] | None:
    """The names a collection lists; None where ``node`` is not one. A collection: a tuple,
    list or set (its strings, the strings of an element tuple or call: ``("alpha", "right")``,
    ``Column("alpha", "alpha", True)``), a dict (its keys), a comprehension (its element:
    ``[f"alpha@{label}" for label in labels]``), strings joined with ``+`` (every string in
    them: a markdown header), a function (the headers of its ``add_column`` calls: a rich
    table built column by column)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return {name for part in ast.walk(node) for name in _names(part)}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and _called(n) == "add_column" and n.args]
        return {name for call in calls for name in _names(call.args[0])}
    if isinstance(node, ast.Dict):
        elements: list[ast.expr | None] = list(node.keys)
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        elements = list(node.elts)
    elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
        elements = [node.elt]
    else:
        return None
    found = set()
    for element in elements:
        parts = (
            element.elts
            if isinstance(element, ast.Tuple)
            else element.args
            if isinstance(element, ast.Call)
            else [element]
            if element is not None
            else []
        )
        found |= {name for part in parts for name in _names(part)}
    return found


def _column_lists(
    names: set[str], home: str, what: str, package: Path, common: frozenset[str] = frozenset()
) -> list[str]:
    """Collections outside ``home`` naming two or more of ``names``, or one of them and a
    name of ``common`` (names other tables have too: by themselves no sign of a second list)."""
    found = []
    for module, path, tree in _modules(package):
        if module == home:
            continue
        for node in ast.walk(tree):
            listed = _listed(node)
            if listed and listed & names and len(listed & (names | common)) >= 2:
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} lists {what}")
    return list(dict.fromkeys(found))  # a concatenation of three strings is two nested sums


def layer_column_lists(package: Path = PACKAGE) -> list[str]:
    """Second lists of a report's layer columns: a collection outside `render.columns` that
    names two or more of its columns (headers, fields or sort keys, beyond the names every
    table shares) — a table's header tuple, an HTML column list, a dict of decimals."""
    return _column_lists(_column_names(), COLUMNS_HOME, "layer columns", package)


PAIR_COLUMNS_HOME = "weightscope.render.compare_columns"


def _pair_column_names() -> set[str]:
    """The comparison's distinctive names: beyond the common ones and those of a report's
    columns (its update table shares ``rank90``, ``eff. rank``…)."""
    from weightscope.render.columns import LAYER_COLUMNS, UPDATE_COLUMNS
    from weightscope.render.compare_columns import PAIR_COLUMNS

    report = {name for column in (*LAYER_COLUMNS, *UPDATE_COLUMNS) for name in (column.field, column.title, column.key)}

    names = {
        name
        for column in PAIR_COLUMNS
        for name in (column.field, column.title, column.short, column.html_column.key if "html" in column.views else "")
        if name
    }
    return names - _COMMON_COLUMNS - report


def pair_column_lists(package: Path = PACKAGE) -> list[str]:
    """Second lists of a comparison's columns: a collection outside `render.compare_columns`
    naming two or more of them (CSV keys, headers, sort keys) — a CSV header, a markdown or
    terminal header list, an HTML column list."""
    return _column_lists(_pair_column_names(), PAIR_COLUMNS_HOME, "comparison columns", package)


def test_one_list_of_layer_columns():
    assert layer_column_lists() == []


def test_a_second_list_of_layer_columns_is_caught(tmp_path):
    planted = tmp_path / "weightscope" / "render"
    planted.mkdir(parents=True)
    (planted / "table.py").write_text('_COLUMNS = (("blk", "right"), ("alpha", "right"), ("σmax²", "right"))\n')
    (planted / "text.py").write_text('MARKDOWN_COLUMNS = ("name", "alpha", "num_tail", "verdict")\n')
    (planted / "html.py").write_text('LAYER_COLUMNS = (Column("alpha", "alpha", True), Column("tail", "tail", True))\n')
    (planted / "style.py").write_text('LAYER_DIGITS = {"alpha": 2, "D": 3}\n')
    (planted / "compare_views.py").write_text('HEADERS = ["layer", "kind", "alpha A", "alpha B", "verdict"]\n')
    found = layer_column_lists(tmp_path / "weightscope")
    assert len(found) == 4 and not any("compare_views" in f for f in found), found


TREND_COLUMNS_HOME = "weightscope.render.trend_columns"


def _point_column_names() -> set[str]:
    """A trend checkpoints table's distinctive names (beyond the report's and the words
    every table of a run uses: step, layers)."""
    from weightscope.render.columns import LAYER_COLUMNS
    from weightscope.render.trend_columns import POINT_COLUMNS

    report = {name for column in LAYER_COLUMNS for name in (column.field, column.title, column.key)}
    names = {name for column in POINT_COLUMNS for name in (column.key, column.title)}
    return names - _COMMON_COLUMNS - report - {"step", "layers"}


def point_column_lists(package: Path = PACKAGE) -> list[str]:
    """Second lists of a trend's checkpoint columns outside `render.trend_columns`."""
    return _column_lists(_point_column_names(), TREND_COLUMNS_HOME, "trend checkpoint columns", package)


def test_one_list_of_trend_checkpoint_columns():
    assert point_column_lists() == []


def test_a_second_list_of_trend_checkpoint_columns_is_caught(tmp_path):
    planted = tmp_path / "weightscope" / "render"
    planted.mkdir(parents=True)
    (planted / "html_trend.py").write_text(
        'COLUMNS = (Column("step", "step", True), Column("median", "median alpha", True), Column("mad", "MAD", True))\n'
    )
    (planted / "compare_views.py").write_text('HEADERS = ["step", "layer", "kind", "alpha A", "verdict"]\n')
    (planted / "trend_views.py").write_text('COLUMNS = ("step", "checkpoint", "from", "median alpha", "verdicts")\n')
    found = point_column_lists(tmp_path / "weightscope")
    assert len(found) == 2 and not any("compare_views" in f for f in found), found


def _series_column_names() -> tuple[set[str], frozenset[str]]:
    """A trend layers table's names (headers, CSV fields, sort keys; a per-checkpoint
    column's as its template, ``alpha@{}``): the distinctive ones, and those every table
    of layers has (block, name, kind)."""
    from weightscope.render.trend_columns import SERIES_COLUMNS

    names = {
        re.sub(r"\{\w*\}", "{}", name)
        for column in SERIES_COLUMNS
        for name in (column.field, column.title, column.short, column.key)
        if name
    } - {"{}"}
    return names - _COMMON_COLUMNS, frozenset(names & _COMMON_COLUMNS)


def series_column_lists(package: Path = PACKAGE) -> list[str]:
    """Second lists of a trend's layer columns outside `render.trend_columns`: a collection
    naming one of its own columns (flags, a per-checkpoint template) and one more of the
    table's — a CSV header, a markdown header, an HTML column list, a rich table's
    ``add_column`` calls."""
    distinctive, common = _series_column_names()
    return _column_lists(distinctive, TREND_COLUMNS_HOME, "trend layer columns", package, common)


def test_one_list_of_trend_layer_columns():
    assert series_column_lists() == []


def test_a_second_list_of_trend_layer_columns_is_caught(tmp_path):
    planted = tmp_path / "weightscope" / "render"
    planted.mkdir(parents=True)
    (planted / "trend_views.py").write_text(
        "def layers_table(trend):\n"
        '    table.add_column("blk", justify="right")\n'
        '    table.add_column("layer")\n'
        "    for point in trend.checkpoints:\n"
        "        table.add_column(label(point))\n"
        '    table.add_column("flags")\n'
        "def to_csv(trend):\n"
        '    steps = [f"alpha@{label(p)}" for p in trend.checkpoints]\n'
        '    return csv_text(["name", "kind", *steps, "flags"], rows)\n'
        "def to_markdown(labels):\n"
        '    return "| layer | kind | " + " | ".join(f"α@{x}" for x in labels) + " | flags |"\n'
    )
    (planted / "html_trend.py").write_text(
        'STEPS = [Column(f"at{i}", f"α@{label}", True) for i, label in enumerate(labels)]\n'
    )
    (planted / "compare_views.py").write_text(
        "def pairs_table():\n"
        '    table.add_column("blk")\n'
        '    table.add_column("layer")\n'
        '    table.add_column("verdict")\n'
        'HEADERS = ["layer", "kind", "alpha A", "alpha B", "verdict"]\n'
        'CELLS = [f"{name}" for name in names]\n'
    )
    found = series_column_lists(tmp_path / "weightscope")
    assert len(found) == 4 and not any("compare_views" in f for f in found), found


def test_one_list_of_comparison_columns():
    assert pair_column_lists() == []


def test_a_second_list_of_comparison_columns_is_caught(tmp_path):
    planted = tmp_path / "weightscope" / "render"
    planted.mkdir(parents=True)
    (planted / "compare_views.py").write_text(
        'CSV_COLUMNS = ("name", "alpha_a", "alpha_b", "delta_alpha", "update.rank90")\n'
        'HEADERS = ["blk", "layer", "α A", "α B", "Δα", "verdict"]\n'
    )
    (planted / "html_compare.py").write_text(
        '_COLUMNS = (Column("alpha_a", "alpha A", True), Column("relative_norm", "‖ΔW‖/‖W‖", True))\n'
    )
    (planted / "table.py").write_text('_COLUMNS = (("blk", "right"), ("alpha", "right"), ("σmax²", "right"))\n')
    found = pair_column_lists(tmp_path / "weightscope")
    assert len(found) == 3 and not any("table.py" in f for f in found), found


def test_the_verdict_vocabulary_is_defined_once():
    """Names, precedence, severity, colour, marker, meaning and advice of every finding
    live in weightscope.vocabulary; every consumer reads them from there."""
    assert vocabulary_copies() == []


def test_has_a_reading_is_decided_once():
    assert reading_definitions() == []


def test_a_second_vocabulary_or_reading_definition_is_caught(tmp_path):
    planted = tmp_path / "weightscope"
    (planted / "render").mkdir(parents=True)
    (planted / "render" / "style.py").write_text(
        'STYLES = {"healthy": "green", "no-reading": "dim"}\n'
        'def legend(verdict):\n    return verdict not in ("healthy", "untrusted-fit")\n'
    )
    (planted / "summary.py").write_text(
        "def is_trusted(layer):\n    return layer.fit_trust is None or layer.fit_trust.trusted\n"
        "def counted(layer):\n    return layer.confidence is not None\n"
    )
    assert len(vocabulary_copies(planted)) == 2, vocabulary_copies(planted)
    assert len(reading_definitions(planted)) == 3, reading_definitions(planted)


def test_every_verdict_has_a_record_with_meaning_and_advice():
    for name in vocabulary.VERDICTS:
        record = vocabulary.finding(name)
        assert record is not None and record.meaning and record.advice, name
        assert record.marker, f"verdict {name} has no plot marker"
    assert len({record.name for record in vocabulary.FINDINGS}) == len(vocabulary.FINDINGS)
    assert all(vocabulary.finding(flag) for flag in (*vocabulary.NO_READING_FLAGS, *vocabulary.APPROXIMATE_FLAGS))


def findings_table() -> str:
    """The findings table of docs/method/diagnostics.md, as the vocabulary writes it."""
    rows = ["| finding | kind | severity | what it means | what to do |", "|---|---|---|---|---|"]
    for record in vocabulary.FINDINGS:
        kind = "verdict" if record.name in vocabulary.VERDICTS else "flag"
        rows.append(f"| `{record.name}` | {kind} | {record.severity.label} | {record.meaning} | {record.advice} |")
    return "\n".join(rows)


def test_the_documented_findings_are_the_vocabulary():
    """The docs' table of findings is the vocabulary, record for record: a finding added,
    renamed or re-worded in one place and not the other fails here."""
    page = (PACKAGE.parent / "docs" / "method" / "diagnostics.md").read_text(encoding="utf-8")
    assert findings_table() in page
