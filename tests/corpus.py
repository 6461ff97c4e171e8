"""A fault-injection corpus: hostile or faulty inputs and scenarios, each with the contract
it must keep (`tests/cli/test_corpus.py` runs every case through the real CLI).

The contract, for every command: bad input, a bad path or a bad environment gives one
line ``error: …`` and exit 2 (a gate violation is exit 1); never a traceback, a hang or a
death by signal; no code from a checkpoint runs; nothing the user had is overwritten or
truncated; one bad layer never loses the report.

Each case is a `Case`: a class (what kind of fault), a name, and a builder that writes
its files into a fresh directory and returns the `Scenario` to run: the arguments, the
exit code expected, a phrase the error line must contain, the files that must come out
byte-identical, and any extra check. Cases are generated from tables where a class has
many members (header fields, report fields × commands), so a new fault is one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import stat
import struct
import subprocess
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from weightscope.checkpoint import write_safetensors

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The file a hostile pickle's payload would create; it must never appear.
MARKER = "PWNED"


@dataclass
class Scenario:
    """One run of the CLI and what it must (and must not) do."""

    args: list[str]
    exit: int | tuple[int, ...] = 2
    #: a phrase the `error:` line must contain (exit 2 only)
    error: str | None = None
    #: files whose bytes and file type must be unchanged afterwards
    keep: tuple[Path, ...] = ()
    #: extra assertions on (stdout, stderr, directory)
    check: Callable[[str, str, Path], None] | None = None
    #: run as a child process (signals, resource limits, SIGBUS would kill pytest)
    subprocess: bool = False
    #: for subprocess cases: a Python script run instead of the CLI
    script: str | None = None
    #: a context manager entered around an in-process run (fault injection by patching)
    patch: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    #: called after the run (unmounts)
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    #: seconds before the run counts as a hang
    timeout: float = 60.0
    #: subprocess cases: seconds of work (after the imports) before a watchdog ends the
    #: child as a hang, independent of how long a loaded machine takes to start Python
    bound: float | None = None
    #: subprocess cases: the child's address-space limit in bytes (RLIMIT_AS)
    memory: int | None = None


@dataclass(frozen=True)
class Case:
    klass: str
    name: str
    build: Callable[[Path, Kit], Scenario]

    @property
    def id(self) -> str:
        return f"{self.klass}:{self.name}"


@dataclass(frozen=True)
class Kit:
    """Artifacts shared by cases, made once: a small model and its saved report."""

    model: Path
    report_text: str

    def model_in(self, directory: Path, name: str = "m.safetensors") -> Path:
        target = directory / name
        target.write_bytes(self.model.read_bytes())
        return target

    def report_in(self, directory: Path, name: str = "r.json", data: Any = None) -> Path:
        target = directory / name
        target.write_text(self.report_text if data is None else json.dumps(data), encoding="utf-8")
        return target

    def report_data(self) -> dict[str, Any]:
        return json.loads(self.report_text)


def small_layers(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"model.layers.{i}.mlp.up_proj.weight": rng.standard_normal((96, 64)).astype(np.float32) for i in range(2)}


CASES: list[Case] = []


def case(klass: str, name: str) -> Callable[[Callable[[Path, Kit], Scenario]], Callable[[Path, Kit], Scenario]]:
    def register(build: Callable[[Path, Kit], Scenario]) -> Callable[[Path, Kit], Scenario]:
        CASES.append(Case(klass, name, build))
        return build

    return register


def add(klass: str, name: str, build: Callable[[Path, Kit], Scenario]) -> None:
    CASES.append(Case(klass, name, build))


# --- helpers -------------------------------------------------------------------------------


def raw_safetensors(path: Path, header: bytes | str | Any, data: bytes = b"", length: int | None = None) -> Path:
    if not isinstance(header, (bytes, str)):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


def legacy_pickle(path: Path, body: bytes) -> Path:
    """A pre-zip torch file (magic, protocol, sys info, object, storage keys) whose object is
    the raw pickle opcodes ``body``: nesting no Python pickler would write."""
    import torch.serialization as ts

    with open(path, "wb") as file:
        for value in (
            ts.MAGIC_NUMBER,
            ts.PROTOCOL_VERSION,
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
        ):
            pickle.dump(value, file, protocol=2)
        file.write(b"\x80\x02" + body + b".")
        pickle.dump([], file, protocol=2)
    return path


def reads_report(
    expect_layers: int, failed: int | None = None, phrase: str | None = None
) -> Callable[[str, str, Path], None]:
    """Check that stdout is a complete JSON report with every layer (bad ones as failed)."""

    def check(stdout: str, stderr: str, directory: Path) -> None:
        report = json.loads(stdout)
        layers = report["layers"]
        assert len(layers) == expect_layers, [layer["name"] for layer in layers]
        bad = [layer for layer in layers if layer["status"] == "failed"]
        if failed is not None:
            assert len(bad) == failed, [layer["reason"] for layer in bad]
        if phrase is not None:
            assert any(phrase in (layer["reason"] or "") for layer in bad), [layer["reason"] for layer in bad]

    return check


def mount_tmpfs(directory: Path, size: str = "1m", read_only: bool = False) -> bool:
    """Mount a small tmpfs at ``directory``; False where mounting is not permitted."""
    directory.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def unmount(directory: Path) -> Callable[[], None]:
    return lambda: subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=20)


def fill(directory: Path) -> None:
    """Fill the file system of ``directory`` to the last byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def enospc_after(limit: int) -> Iterator[None]:
    """Fallback where tmpfs cannot be mounted: os.write in weightscope.io fails with ENOSPC
    once ``limit`` bytes have been written."""
    import weightscope.io as wio

    written = 0
    real = os.write

    def write(fd: int, data: Any) -> int:
        nonlocal written
        if written + len(data) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += len(data)
        return real(fd, data)

    wio.os.write = write  # type: ignore[attr-defined]
    try:
        yield
    finally:
        wio.os.write = real  # type: ignore[attr-defined]


def full_disk(directory: Path, scenario_args: Callable[[Path], list[str]], old_name: str, **extra: Any) -> Scenario:
    """A run whose output lands on a full disk: the old file stays, no partial file appears."""
    disk = directory / "disk"
    mounted = mount_tmpfs(disk)
    try:
        disk.mkdir(exist_ok=True)
        old = disk / old_name
        old.write_bytes(b"the user's previous file\n")
        if mounted:
            fill(disk)
    except BaseException:
        if mounted:
            unmount(disk)()
        raise

    def nothing_partial(stdout: str, stderr: str, where: Path) -> None:
        leftovers = sorted(p.name for p in disk.iterdir() if p.name not in (old_name, "filler"))
        assert not leftovers, leftovers

    return Scenario(
        scenario_args(disk),
        exit=2,
        error="No space left on device",
        keep=(old,),
        check=nothing_partial,
        patch=None if mounted else (lambda: enospc_after(0)),
        cleanup=[unmount(disk)] if mounted else [],
        **extra,
    )


# --- 1. pickles ----------------------------------------------------------------------------

PAYLOADS = {
    "os-system": ("posix", "system"),
    "builtins-eval": ("builtins", "eval"),
    "builtins-exec": ("builtins", "exec"),
    "subprocess-popen": ("subprocess", "Popen"),
}


def _evil(module: str, function: str) -> Callable[[Path, Kit], Scenario]:
    def build(directory: Path, kit: Kit) -> Scenario:
        marker = directory / MARKER
        argument: Any = f"open({str(marker)!r}, 'w')" if function in ("eval", "exec") else f"touch {marker}"
        if function == "Popen":
            argument = ["touch", str(marker)]
        payload = pickle.dumps(argument, protocol=2)[2:-1]  # the argument's opcodes
        body = b"}X\x01\x00\x00\x00w" + f"c{module}\n{function}\n".encode() + payload + b"\x85Rs"
        return Scenario(
            ["analyze", str(legacy_pickle(directory / "evil.pt", body)), "--no-cache"], error="never runs code"
        )

    return build


for _name, (_module, _function) in PAYLOADS.items():
    add("pickles", f"payload-{_name}", _evil(_module, _function))


def _zip_payload(directory: Path, kit: Kit) -> Scenario:
    marker = directory / MARKER
    body = b"}X\x01\x00\x00\x00wcposix\nsystem\n" + pickle.dumps(f"touch {marker}", protocol=2)[2:-1] + b"\x85Rs"
    path = directory / "evil_zip.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + body + b".")
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")
    return Scenario(["inspect", str(path)], error="never runs code")


add("pickles", "payload-in-zip", _zip_payload)


@case("pickles", "shared-structure-2^40-paths")
def _shared(directory: Path, kit: Kit) -> Scenario:
    import torch

    tree: Any = torch.ones(64, 64)
    for _ in range(40):
        tree = (tree, tree)
    torch.save({"w": tree}, directory / "bomb.pt")
    return Scenario(["inspect", str(directory / "bomb.pt")], exit=0, timeout=30)


@case("pickles", "shared-structure-analyze")
def _shared_analyze(directory: Path, kit: Kit) -> Scenario:
    import torch

    tree: Any = torch.randn(96, 64)
    for _ in range(30):
        tree = [tree, tree, tree]
    torch.save({"w": tree}, directory / "bomb.pt")
    return Scenario(["analyze", str(directory / "bomb.pt"), "--no-cache", "-f", "json"], exit=0, timeout=30)


for _depth, _opcodes in (("list", (b"]", b"a")), ("dict", (b"}", b"s")), ("tuple-in-list", (b"]", b"a"))):

    def _deep(directory: Path, kit: Kit, opcodes: tuple[bytes, bytes] = _opcodes, kind: str = _depth) -> Scenario:
        n = 20_000
        open_op, close_op = opcodes
        body = b"}" + b"X\x01\x00\x00\x00k}" * n + b"s" * n if kind == "dict" else open_op * n + close_op * (n - 1)
        return Scenario(["inspect", str(legacy_pickle(directory / "deep.pt", body))], error="nested more than")

    add("pickles", f"nesting-20000-{_depth}", _deep)


@case("pickles", "stride-0-100000x100000")
def _stride0(directory: Path, kit: Kit) -> Scenario:
    import torch

    torch.save(
        {"big.weight": torch.zeros(1).expand(100_000, 100_000), "ok.weight": torch.randn(96, 64)}, directory / "s.pt"
    )
    return Scenario(
        ["analyze", str(directory / "s.pt"), "--no-cache", "-f", "json"],
        exit=0,
        check=reads_report(2, failed=1, phrase="its storage holds"),
        timeout=30,
    )


@case("pickles", "view-larger-than-storage")
def _oversized(directory: Path, kit: Kit) -> Scenario:
    import torch

    storage = torch.randn(10)
    view = torch.empty(0).set_(storage.untyped_storage(), 0, (3000, 3000), (0, 1))
    torch.save({"v.weight": view, "ok.weight": torch.randn(96, 64)}, directory / "v.pt")
    return Scenario(
        ["analyze", str(directory / "v.pt"), "--no-cache", "-f", "json"], exit=0, check=reads_report(2, failed=1)
    )


@case("pickles", "sparse-and-meta-beside-good")
def _sparse(directory: Path, kit: Kit) -> Scenario:
    import torch

    torch.save(
        {
            "a.weight": torch.randn(96, 64),
            "sp.weight": torch.randn(96, 64).to_sparse(),
            "meta.weight": torch.empty(96, 64, device="meta"),
        },
        directory / "sparse.pt",
    )
    return Scenario(
        ["analyze", str(directory / "sparse.pt"), "--no-cache", "-f", "json"], exit=0, check=reads_report(3, failed=2)
    )


@case("pickles", "sparse-csr-inspect")
def _sparse_csr(directory: Path, kit: Kit) -> Scenario:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = torch.randn(96, 64).to_sparse_csr()
    torch.save({"a.weight": torch.randn(96, 64), "csr.weight": csr}, directory / "csr.pt")
    return Scenario(["inspect", str(directory / "csr.pt")], exit=0)


@case("pickles", "nested-tensor-beside-good")
def _nested(directory: Path, kit: Kit) -> Scenario:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.randn(3, 4), torch.randn(5, 4)])
    torch.save({"a.weight": torch.randn(96, 64), "n.weight": nested}, directory / "nested.pt")
    return Scenario(
        ["analyze", str(directory / "nested.pt"), "--no-cache", "-f", "json"], exit=0, check=reads_report(1, failed=0)
    )


@case("pickles", "two-names-flatten-to-one")
def _clash(directory: Path, kit: Kit) -> Scenario:
    import torch

    torch.save({"a.b": torch.ones(2), "a": {"b": torch.ones(2)}}, directory / "clash.pt")
    return Scenario(["inspect", str(directory / "clash.pt")], error="flatten to the name")


@case("pickles", "self-referencing-list")
def _selfref(directory: Path, kit: Kit) -> Scenario:
    body = b"]q\x00(h\x00e"  # a list that contains itself
    return Scenario(
        ["inspect", str(legacy_pickle(directory / "loop.pt", b"}X\x01\x00\x00\x00w" + body + b"s"))], exit=0
    )


@case("pickles", "truncated-zip")
def _truncated_zip(directory: Path, kit: Kit) -> Scenario:
    import torch

    torch.save({"w": torch.randn(96, 64)}, directory / "t.pt")
    data = (directory / "t.pt").read_bytes()
    (directory / "t.pt").write_bytes(data[: len(data) // 2])
    return Scenario(["analyze", str(directory / "t.pt"), "--no-cache"], error="t.pt")


@case("pickles", "truncated-legacy")
def _truncated_legacy(directory: Path, kit: Kit) -> Scenario:
    import torch

    torch.save({"w": torch.randn(96, 64)}, directory / "t.pt", _use_new_zipfile_serialization=False)
    data = (directory / "t.pt").read_bytes()
    (directory / "t.pt").write_bytes(data[: len(data) - 100])
    return Scenario(["analyze", str(directory / "t.pt"), "--no-cache"], error="t.pt")


@case("pickles", "corrupt-data-pkl")
def _corrupt_pkl(directory: Path, kit: Kit) -> Scenario:
    path = directory / "c.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02garbage")
        archive.writestr("archive/version", "3\n")
    return Scenario(["inspect", str(path)], error="c.pt")


@case("pickles", "random-bytes-dot-pt")
def _random_pt(directory: Path, kit: Kit) -> Scenario:
    path = directory / "r.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return Scenario(["inspect", str(path)], error="not a PyTorch checkpoint")


@case("pickles", "empty-dot-bin")
def _empty_bin(directory: Path, kit: Kit) -> Scenario:
    (directory / "pytorch_model.bin").write_bytes(b"")
    return Scenario(["analyze", str(directory / "pytorch_model.bin"), "--no-cache"], error="pytorch_model.bin")


@case("pickles", "not-a-dict")
def _not_dict(directory: Path, kit: Kit) -> Scenario:
    import torch

    torch.save(12345, directory / "int.pt")
    return Scenario(["analyze", str(directory / "int.pt"), "--no-cache", "-f", "json"], exit=0, check=reads_report(0))


class _Evil:
    """Unpickling this runs ``touch MARKER``: proof, if the marker appears, that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@case("pickles", "npz-archive")
def _npz(directory: Path, kit: Kit) -> Scenario:
    """An .npz whose member is a pickled object array: listed as skipped, never unpickled."""
    payload = np.empty(1, dtype=object)
    payload[0] = _Evil(directory / MARKER)
    np.savez(directory / "w.npz", a=np.ones((64, 64), dtype=np.float32), evil=payload)
    return Scenario(["analyze", str(directory / "w.npz"), "--no-cache", "-f", "json"], exit=0)


# --- 2. safetensors headers ----------------------------------------------------------------

_F32_64x96 = {"dtype": "F32", "shape": [96, 64], "data_offsets": [0, 96 * 64 * 4]}
_DATA = bytes(96 * 64 * 4)

HEADERS: dict[str, tuple[Any, bytes, int | None, str]] = {
    # name: (header, data, forced length prefix, phrase of the error)
    "length-over-100MB": ({"w": _F32_64x96}, _DATA, 1 << 40, "safetensors"),
    "length-past-eof": ({"w": _F32_64x96}, b"", 10_000, "exceeds the file size"),
    "not-json": (b"{not json", b"", None, "not valid JSON"),
    "json-list": ([1, 2], b"", None, "not a JSON object"),
    "json-array-object": ('{"w": [1]}', b"", None, "not a JSON object"),
    "duplicate-key": (
        f'{{"w": {json.dumps(_F32_64x96)}, "w": {json.dumps(_F32_64x96)}}}',
        _DATA,
        None,
        "appears twice",
    ),
    "unknown-dtype": ({"w": {**_F32_64x96, "dtype": "F128"}}, _DATA, None, "unknown dtype"),
    "dtype-not-string": ({"w": {**_F32_64x96, "dtype": 7}}, _DATA, None, "unknown dtype"),
    "negative-shape": ({"w": {**_F32_64x96, "shape": [-96, 64]}}, _DATA, None, "non-negative integers"),
    "float-shape": ({"w": {**_F32_64x96, "shape": [96.0, 64]}}, _DATA, None, "non-negative integers"),
    "bool-shape": ({"w": {**_F32_64x96, "shape": [True, 64]}}, _DATA, None, "non-negative integers"),
    "shape-not-list": ({"w": {**_F32_64x96, "shape": "96x64"}}, _DATA, None, "non-negative integers"),
    "offsets-reversed": ({"w": {**_F32_64x96, "data_offsets": [10, 0]}}, _DATA, None, "data_offsets"),
    "offsets-three": ({"w": {**_F32_64x96, "data_offsets": [0, 1, 2]}}, _DATA, None, "data_offsets"),
    "offsets-past-data": ({"w": {**_F32_64x96, "data_offsets": [0, 10**9]}}, _DATA, None, "truncated file"),
    "offsets-span-mismatch": ({"w": {**_F32_64x96, "data_offsets": [0, 100]}}, _DATA, None, "needs"),
    "shape-product-overflow": (
        {"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}},
        bytes(16),
        None,
        "needs",
    ),
    "overlap": ({"a": _F32_64x96, "b": _F32_64x96}, _DATA, None, "overlap"),
    "entry-not-object": ({"w": [1, 2, 3]}, b"", None, "not a JSON object"),
    "missing-keys": ({"w": {"dtype": "F32"}}, b"", None, "lacks"),
    "invalid-utf8": (b'{"w\xff": 1}', b"", None, "not valid JSON"),
    "deep-json": (b"[" * 100_000 + b"]" * 100_000, b"", None, "not valid JSON"),
    "length-zero": (b"", b"", 0, "safetensors"),
}

for _name, (_header, _data, _length, _phrase) in HEADERS.items():

    def _header_case(
        directory: Path,
        kit: Kit,
        header: Any = _header,
        data: bytes = _data,
        length: int | None = _length,
        phrase: str = _phrase,
    ) -> Scenario:
        path = raw_safetensors(directory / "h.safetensors", header, data, length)
        return Scenario(["analyze", str(path), "--no-cache"], error=phrase)

    add("safetensors-headers", _name, _header_case)


@case("safetensors-headers", "seven-bytes")
def _seven(directory: Path, kit: Kit) -> Scenario:
    (directory / "s.safetensors").write_bytes(b"\x01" * 7)
    return Scenario(["inspect", str(directory / "s.safetensors")], error="s.safetensors")


@case("safetensors-headers", "no-tensors")
def _empty_header(directory: Path, kit: Kit) -> Scenario:
    path = raw_safetensors(directory / "e.safetensors", {"__metadata__": {"a": "b"}})
    return Scenario(["analyze", str(path), "--no-cache", "-f", "json"], exit=0, check=reads_report(0))


@case("output-injection", "tensor-name-with-newline-and-markup")
def _name_injection(directory: Path, kit: Kit) -> Scenario:
    name = "x\n::error::forged [red]PASS\x1b[0m"
    path = raw_safetensors(directory / "n.safetensors", {name: {**_F32_64x96, "dtype": "F99"}}, _DATA)
    return Scenario(["analyze", str(path), "--no-cache"], error="unknown dtype")


# --- 3. shard indexes ----------------------------------------------------------------------


def _sharded(directory: Path, kit: Kit, weight_map: Any, raw: str | None = None) -> Path:
    model = directory / "model"
    model.mkdir()
    layers = small_layers()
    names = list(layers)
    write_safetensors(model / "model-00001-of-00002.safetensors", {names[0]: layers[names[0]]})
    write_safetensors(model / "model-00002-of-00002.safetensors", {names[1]: layers[names[1]]})
    index = model / "model.safetensors.index.json"
    index.write_text(raw if raw is not None else json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


_GOOD_MAP = {
    "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
    "model.layers.1.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
}

INDEXES: dict[str, tuple[Any, str | None, str]] = {
    "no-weight-map": (None, '{"metadata": {}}', 'no "weight_map"'),
    "empty-weight-map": ({}, None, 'no "weight_map"'),
    "values-not-strings": ({"a": 1}, None, "shard file names"),
    "absolute-shard": ({"a": "/etc/passwd"}, None, "leaves the index's directory"),
    "dotdot-shard": ({"a": "../../etc/passwd"}, None, "leaves the index's directory"),
    "missing-shard": ({"a": "model-00009-of-00009.safetensors"}, None, "is missing"),
    "wrong-shard": (
        {"model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors"},
        None,
        "does not hold it",
    ),
    "not-json": (None, "{weight_map: ", "not valid JSON"),
    "deep-json": (None, "[" * 100_000 + "]" * 100_000, "not valid JSON"),
    "index-is-list": (None, "[1, 2, 3]", 'no "weight_map"'),
    "index-names-itself": ({"a": "model.safetensors.index.json"}, None, "model.safetensors.index.json"),
}

for _name, (_map, _raw, _phrase) in INDEXES.items():

    def _index_case(
        directory: Path, kit: Kit, weight_map: Any = _map, raw: str | None = _raw, phrase: str = _phrase
    ) -> Scenario:
        index = _sharded(directory, kit, weight_map, raw)
        return Scenario(["analyze", str(index.parent), "--no-cache"], error=phrase, keep=(index,))

    add("shard-indexes", _name, _index_case)


@case("shard-indexes", "two-indexes")
def _two_indexes(directory: Path, kit: Kit) -> Scenario:
    index = _sharded(directory, kit, _GOOD_MAP)
    (index.parent / "other.safetensors.index.json").write_text(index.read_text())
    return Scenario(["inspect", str(index.parent)], error="several shard indexes")


@case("shard-indexes", "shard-is-a-directory")
def _shard_dir(directory: Path, kit: Kit) -> Scenario:
    index = _sharded(directory, kit, {"a": "sub"})
    (index.parent / "sub").mkdir()
    return Scenario(["inspect", str(index)], error="is missing")


@case("shard-indexes", "shards-without-index-share-a-name")
def _dup_shards(directory: Path, kit: Kit) -> Scenario:
    model = directory / "model"
    model.mkdir()
    for i in (1, 2):
        write_safetensors(model / f"model-0000{i}-of-00002.safetensors", small_layers())
    return Scenario(["inspect", str(model)], error="stored twice")


@case("shard-indexes", "300-shards-under-ulimit-256")
def _many_shards(directory: Path, kit: Kit) -> Scenario:
    model = directory / "model"
    model.mkdir()
    rng = np.random.default_rng(0)
    weight_map = {}
    for i in range(300):
        name = f"model-{i:05d}-of-00300.safetensors"
        write_safetensors(model / name, {f"layer.{i}.weight": rng.standard_normal((4, 4)).astype(np.float32)})
        weight_map[f"layer.{i}.weight"] = name
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "from weightscope.cli import app\n"
        f"sys.argv = ['weightscope', 'analyze', {str(model)!r}, '--min-evals', '2', '--no-cache', '-f', 'json']\n"
        "app()\n"
    )
    return Scenario([], exit=0, subprocess=True, script=script, check=reads_report(300), timeout=120)


# --- 4. tensor contents ----------------------------------------------------------------------


def _contents(
    transform: Callable[[np.ndarray], np.ndarray], failed: int, phrase: str | None = None, dtype: str | None = None
) -> Callable[[Path, Kit], Scenario]:
    def build(directory: Path, kit: Kit) -> Scenario:
        layers = small_layers()
        bad = "model.layers.1.mlp.up_proj.weight"
        with np.errstate(all="ignore"):
            layers[bad] = transform(layers[bad])
        path = write_safetensors(directory / "c.safetensors", layers, dtypes={bad: dtype} if dtype else None)
        return Scenario(
            ["analyze", str(path), "--no-cache", "-f", "json"],
            exit=0,
            check=reads_report(2, failed=failed, phrase=phrase),
        )

    return build


def _with(value: float, where: tuple[int, int] = (3, 5)) -> Callable[[np.ndarray], np.ndarray]:
    def transform(w: np.ndarray) -> np.ndarray:
        w = w.copy()
        w[where] = value
        return w

    return transform


add("tensor-contents", "one-nan", _contents(_with(np.nan), 1, "NaN"))
add("tensor-contents", "one-inf", _contents(_with(np.inf), 1, "Inf"))
add("tensor-contents", "all-zero", _contents(np.zeros_like, 1, "all-zero"))
add("tensor-contents", "scaled-1e-30", _contents(lambda w: (w * 1e-30).astype(np.float32), 0))
add("tensor-contents", "scaled-1e30", _contents(lambda w: (w * 1e30).astype(np.float32), 0))
add("tensor-contents", "subnormal", _contents(lambda w: (w * 1e-42).astype(np.float32), 0))
add("tensor-contents", "f16-overflow-to-inf", _contents(lambda w: w * 1e6, 1, "Inf", dtype="F16"))
# A constant matrix's ESD is known in closed form (one eigenvalue c²·M): no solve, and no
# tail to fit, so the layer fails with that reason rather than a fit of rounding noise.
add("tensor-contents", "constant", _contents(np.ones_like, 1, "distinct positive eigenvalue"))
add("tensor-contents", "rank-one", _contents(lambda w: np.outer(w[:, 0], w[0]).astype(np.float32), 0))


@case("tensor-contents", "integers-and-vectors-only")
def _no_matrices(directory: Path, kit: Kit) -> Scenario:
    path = write_safetensors(directory / "i.safetensors", {"ids": np.arange(10), "bias": np.ones(8, np.float32)})
    return Scenario(["analyze", str(path), "--no-cache", "-f", "json"], exit=0, check=reads_report(0))


# --- 5. paths and special files ------------------------------------------------------------


def _refuse(
    make_args: Callable[[Path, Kit], tuple[list[str], tuple[Path, ...]]], phrase: str = "input of this run"
) -> Callable[[Path, Kit], Scenario]:
    def build(directory: Path, kit: Kit) -> Scenario:
        args, keep = make_args(directory, kit)
        return Scenario(args, error=phrase, keep=keep)

    return build


def _out_is_checkpoint(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    return ["analyze", str(m), "-f", "json", "-o", str(m)], (m,)


def _html_is_checkpoint(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    return ["analyze", str(m), "--html", str(m)], (m,)


def _out_is_index(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    index = _sharded(d, kit, _GOOD_MAP)
    return ["analyze", str(index.parent), "-f", "json", "-o", str(index)], (index,)


def _out_is_shard(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    index = _sharded(d, kit, _GOOD_MAP)
    shard = index.parent / "model-00002-of-00002.safetensors"
    return ["analyze", str(index), "-f", "json", "-o", str(shard)], (shard, index)


def _gate_out_is_report(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    r = kit.report_in(d)
    return ["gate", str(r), "-o", str(r)], (r,)


def _gate_out_is_baseline(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    r, b = kit.report_in(d), kit.report_in(d, "base.json")
    return ["gate", str(r), "--baseline", str(b), "-o", str(b)], (r, b)


def _compare_out_is_side(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    r, b = kit.report_in(d), kit.report_in(d, "b.json")
    return ["compare", str(r), str(b), "-o", str(b)], (r, b)


def _trend_out_is_member(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    run = d / "run"
    run.mkdir()
    a, b = kit.model_in(run, "step-1.safetensors"), kit.model_in(run, "step-2.safetensors")
    return ["trend", str(run), "-f", "json", "-o", str(b)], (a, b)


def _trend_plot_is_member(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    a, b = kit.report_in(d, "step-1.json"), kit.report_in(d, "step-2.json")
    return ["trend", str(a), str(b), "--plot", str(a)], (a, b)


def _symlink_to_input(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    (d / "link.json").symlink_to(m)
    return ["analyze", str(m), "-o", str(d / "link.json")], (m,)


def _hardlink_to_input(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    os.link(m, d / "hard.json")
    return ["analyze", str(m), "-o", str(d / "hard.json")], (m,)


def _relative_spelling(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    (d / "sub").mkdir()
    return ["analyze", str(m), "-f", "json", "-o", str(d / "sub" / ".." / "m.safetensors")], (m,)


def _config_as_output(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    config = d / "policy.toml"
    config.write_text("[tool.weightscope]\n")
    return ["analyze", str(m), "--config", str(config), "-f", "json", "-o", str(config)], (m, config)


def _two_outputs(d: Path, kit: Kit) -> tuple[list[str], tuple[Path, ...]]:
    m = kit.model_in(d)
    return ["analyze", str(m), "-o", str(d / "x.json"), "--html", str(d / "x.json")], (m,)


for _name, _make in {
    "o-is-checkpoint": _out_is_checkpoint,
    "html-is-checkpoint": _html_is_checkpoint,
    "o-is-index": _out_is_index,
    "o-is-shard": _out_is_shard,
    "gate-o-is-report": _gate_out_is_report,
    "gate-o-is-baseline": _gate_out_is_baseline,
    "compare-o-is-side": _compare_out_is_side,
    "trend-o-is-member": _trend_out_is_member,
    "trend-plot-is-member": _trend_plot_is_member,
    "o-is-symlink-to-input": _symlink_to_input,
    "o-is-hardlink-to-input": _hardlink_to_input,
    "o-is-input-spelt-differently": _relative_spelling,
    "o-is-config": _config_as_output,
}.items():
    add("paths", _name, _refuse(_make))

add("paths", "two-outputs-one-file", _refuse(_two_outputs, "two outputs name one file"))


def _special_output(make: Callable[[Path], Path]) -> Callable[[Path, Kit], Scenario]:
    """Output to a device or to the stdout link. The device is a private null device made
    with mknod (as root; /dev/null itself where that is refused, i.e. not root, who
    cannot replace /dev/null anyway), so that a regression replaces a test file, never the
    machine's /dev/null."""

    def build(directory: Path, kit: Kit) -> Scenario:
        m = kit.model_in(directory)
        target = make(directory)
        before = os.lstat(target)

        def unchanged(stdout: str, stderr: str, where: Path) -> None:
            after = os.lstat(target)
            assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)

        return Scenario(
            ["analyze", str(m), "-f", "json", "-o", str(target), "--no-cache"], exit=0, keep=(m,), check=unchanged
        )

    return build


def _null_device(directory: Path) -> Path:
    node = directory / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        return Path("/dev/null")
    return node


def _stdout_link(directory: Path) -> Path:
    (directory / "stdout").symlink_to("/proc/self/fd/1")
    return directory / "stdout"


def _dev_fd_link(directory: Path) -> Path:
    (directory / "fd1").symlink_to("/dev/fd/1")
    return directory / "fd1"


add("paths", "o-char-device", _special_output(_null_device))
add("paths", "o-link-to-proc-self-fd-1", _special_output(_stdout_link))
add("paths", "o-link-to-dev-fd-1", _special_output(_dev_fd_link))


@case("paths", "o-dash-is-stdout")
def _dash(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    return Scenario(
        ["analyze", str(m), "-f", "json", "-o", "-", "--no-cache"], exit=0, check=reads_report(2), keep=(m,)
    )


@case("paths", "o-fifo-is-streamed")
def _fifo(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    fifo = directory / "pipe"
    os.mkfifo(fifo)
    script = (
        "import subprocess, sys, stat, os\n"
        f"reader = subprocess.Popen(['cat', {str(fifo)!r}], stdout=subprocess.PIPE)\n"
        f"done = subprocess.run([sys.executable, '-m', 'weightscope', 'analyze', {str(m)!r}, '-f', 'json', '-o', {str(fifo)!r}, '--no-cache'], capture_output=True, text=True, timeout=60)\n"
        "out = reader.communicate(timeout=60)[0]\n"
        f"assert stat.S_ISFIFO(os.lstat({str(fifo)!r}).st_mode)\n"
        "sys.stderr.write(done.stderr)\n"
        "sys.stdout.write(out.decode())\n"
        "sys.exit(done.returncode)\n"
    )
    return Scenario([], exit=0, subprocess=True, script=script, check=reads_report(2), keep=(m,))


@case("paths", "o-symlink-written-through")
def _symlink_through(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    (directory / "old.json").write_text("old")
    (directory / "link.json").symlink_to("old.json")

    def through(stdout: str, stderr: str, where: Path) -> None:
        assert (where / "link.json").is_symlink()
        assert json.loads((where / "old.json").read_text())["layers"]

    return Scenario(
        ["analyze", str(m), "-o", str(directory / "link.json"), "--no-cache"], exit=0, check=through, keep=(m,)
    )


for _name, _out, _phrase in (
    ("o-missing-directory", "nowhere/x.json", "does not exist"),
    ("o-is-directory", ".", "is a directory"),
    ("html-missing-directory", "nowhere/x.html", "does not exist"),
):

    def _bad_out(
        directory: Path, kit: Kit, out: str = _out, phrase: str = _phrase, html: bool = "html" in _name
    ) -> Scenario:
        m = kit.model_in(directory)
        flag = "--html" if html else "-o"
        return Scenario(
            ["analyze", str(m), flag, str(directory / out), "-f", "json", "--no-cache"], error=phrase, keep=(m,)
        )

    add("paths", _name, _bad_out)


@case("paths", "o-read-only-file-system")
def _read_only(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    disk = directory / "ro"
    if not mount_tmpfs(disk, read_only=True):
        disk.mkdir(exist_ok=True)
        os.chmod(disk, 0o555)
        if os.geteuid() == 0:  # root writes through 0555: nothing left to test without a mount
            return Scenario(
                ["analyze", str(m), "-f", "json", "-o", str(directory / "nowhere" / "x.json")], error="does not exist"
            )
        return Scenario(["analyze", str(m), "-f", "json", "-o", str(disk / "x.json")], error="ermission denied")
    return Scenario(
        ["analyze", str(m), "-f", "json", "-o", str(disk / "x.json")],
        error="Read-only file system",
        cleanup=[unmount(disk)],
    )


@case("paths", "gate-o-missing-directory-before-analysis")
def _gate_bad_out(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    return Scenario(["gate", str(m), "-o", str(directory / "no" / "g.json")], error="does not exist")


@case("paths", "plot-out-is-a-file")
def _plot_out_file(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    (directory / "f").write_text("keep")
    return Scenario(["plot", str(m), "--summary", "-d", str(directory / "f")], error="f", keep=(directory / "f", m))


for _name, _make_input, _phrase in (
    ("input-missing", lambda d: d / "absent.safetensors", "no such file"),
    ("input-empty-directory", lambda d: (d / "empty").mkdir() or d / "empty", "holds no files"),
    ("input-dev-zero", lambda d: Path("/dev/zero"), "not a regular file"),
    ("input-fifo-no-hang", lambda d: os.mkfifo(d / "in.safetensors") or d / "in.safetensors", "not a regular file"),
    (
        "input-fifo-index-no-hang",
        lambda d: os.mkfifo(d / "m.safetensors.index.json") or d / "m.safetensors.index.json",
        "not a regular file",
    ),
    ("input-symlink-loop", lambda d: (d / "loop").symlink_to(d / "loop") or d / "loop", "symlink"),
    ("input-dangling-symlink", lambda d: (d / "dangling").symlink_to(d / "gone") or d / "dangling", "symlink"),
    ("input-text-file", lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not a checkpoint"),
):

    def _bad_input(
        directory: Path, kit: Kit, make: Callable[[Path], Path] = _make_input, phrase: str = _phrase
    ) -> Scenario:
        return Scenario(["analyze", str(make(directory)), "--no-cache"], error=phrase, timeout=30)

    add("paths", _name, _bad_input)


@case("paths", "trend-dir-without-steps-is-a-run")
def _trend_no_steps(directory: Path, kit: Kit) -> Scenario:
    run = directory / "run"
    run.mkdir()
    kit.model_in(run, "first.safetensors")
    kit.model_in(run, "second.safetensors")
    return Scenario(["trend", str(run), "-f", "json"], exit=0)


# --- 6. signals and concurrent rewrites ----------------------------------------------------

_REWRITE = """
import json, os, sys
from weightscope.analysis.pipeline import analyze
from weightscope.execution.plan import Execution
path = sys.argv[1]
def hook(done, layers):
    if done == 0:
{action}
report = analyze(path, progress=hook, execution=Execution(workers=1, cache=False))
print(json.dumps(report.to_dict()))
"""


def _rewrite(
    name: str, writer: str, action: str, phrase: str | None, failed: int = 2
) -> Callable[[Path, Kit], Scenario]:
    def build(directory: Path, kit: Kit) -> Scenario:
        if writer == "torch":
            import torch

            path = directory / "m.pt"
            torch.save({k: torch.from_numpy(v) for k, v in small_layers().items()}, path)
        else:
            path = kit.model_in(directory)
        body = "\n".join("        " + line for line in action.format(path=str(path)).splitlines())
        script = _REWRITE.format(action=body) + ""
        return Scenario(
            [str(path)], exit=0, subprocess=True, script=script, check=reads_report(2, failed=failed, phrase=phrase)
        )

    return build


add(
    "signals-and-rewrites",
    "safetensors-truncated-while-read",
    _rewrite("t", "st", "os.truncate({path!r}, 200)", "truncated while being read"),
)
add(
    "signals-and-rewrites",
    "safetensors-replaced-while-read",
    _rewrite(
        "r",
        "st",
        "open({path!r} + '.new', 'wb').write(b'x' * 64)\nos.replace({path!r} + '.new', {path!r})",
        "changed since it was opened",
    ),
)
add(
    "signals-and-rewrites",
    "safetensors-rewritten-in-place",
    _rewrite("w", "st", "data = open({path!r}, 'rb').read()\nopen({path!r}, 'r+b').write(data)", None, failed=0),
)
add(
    "signals-and-rewrites",
    "torch-zip-truncated-while-read",
    _rewrite("tt", "torch", "os.truncate({path!r}, 100)", "truncated while being read"),
)
add(
    "signals-and-rewrites",
    "torch-zip-replaced-while-read",
    _rewrite(
        "tr",
        "torch",
        "open({path!r} + '.new', 'wb').write(b'x' * 64)\nos.replace({path!r} + '.new', {path!r})",
        "changed since it was opened",
    ),
)


@case("signals-and-rewrites", "sigint-mid-run")
def _sigint(directory: Path, kit: Kit) -> Scenario:
    rng = np.random.default_rng(1)
    path = write_safetensors(
        directory / "big.safetensors",
        {f"l.{i}.weight": rng.standard_normal((512, 384)).astype(np.float32) for i in range(24)},
    )
    out = directory / "out.json"
    out.write_text("previous")
    script = (
        "import subprocess, sys, time, signal\n"
        f"child = subprocess.Popen([sys.executable, '-m', 'weightscope', 'analyze', {str(path)!r}, '-o', {str(out)!r}, '--no-cache', '--randomize'], stderr=subprocess.PIPE, text=True)\n"
        "time.sleep(2.5)\n"
        "child.send_signal(signal.SIGINT)\n"
        "err = child.communicate(timeout=60)[1]\n"
        "sys.stderr.write(err)\n"
        "assert child.returncode in (0, 130), child.returncode\n"
    )

    def intact(stdout: str, stderr: str, where: Path) -> None:
        text = out.read_text()
        assert text == "previous" or json.loads(text)["layers"]
        assert not [p for p in directory.iterdir() if p.name.startswith(".out.json")]

    return Scenario([], exit=0, subprocess=True, script=script, check=intact, timeout=90)


@case("signals-and-rewrites", "sigpipe-reader-closes-early")
def _sigpipe(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory)
    script = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-m', 'weightscope', 'analyze', {str(m)!r}, '-f', 'json', '--no-cache'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
        "child.stdout.read(1)\n"
        "child.stdout.close()\n"
        "err = child.stderr.read().decode()\n"
        "child.wait(timeout=60)\n"
        "sys.stderr.write(err)\n"
        "assert child.returncode >= 0, child.returncode\n"
    )
    return Scenario([], exit=0, subprocess=True, script=script)


# --- 7. disk full (a 1 MB tmpfs, filled) ---------------------------------------------------

add(
    "disk-full",
    "report-json",
    lambda d, kit: full_disk(
        d, lambda disk: ["analyze", str(kit.model_in(d)), "-o", str(disk / "r.json"), "--no-cache"], "r.json"
    ),
)
add(
    "disk-full",
    "html",
    lambda d, kit: full_disk(
        d, lambda disk: ["analyze", str(kit.model_in(d)), "--html", str(disk / "r.html"), "--no-cache"], "r.html"
    ),
)
add(
    "disk-full",
    "png-summary",
    lambda d, kit: full_disk(
        d, lambda disk: ["plot", str(kit.model_in(d)), "--summary", "--no-randomize", "-d", str(disk)], "summary.png"
    ),
)
add(
    "disk-full",
    "gate-json",
    lambda d, kit: full_disk(d, lambda disk: ["gate", str(kit.report_in(d)), "-o", str(disk / "g.json")], "g.json"),
)
add(
    "disk-full",
    "compare-md",
    lambda d, kit: full_disk(
        d,
        lambda disk: ["compare", str(kit.report_in(d)), str(kit.report_in(d, "b.json")), "-o", str(disk / "c.md")],
        "c.md",
    ),
)
add(
    "disk-full",
    "trend-csv",
    lambda d, kit: full_disk(
        d,
        lambda disk: [
            "trend",
            str(kit.report_in(d, "step-1.json")),
            str(kit.report_in(d, "step-2.json")),
            "-o",
            str(disk / "t.csv"),
        ],
        "t.csv",
    ),
)


# --- 8. report tampering (× compare, gate, trend) -------------------------------------------


def _tamper(edit: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    return edit


def _set_layer(field_name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(data: dict[str, Any]) -> Any:
        data["layers"][0][field_name] = value
        return data

    return edit


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(data: dict[str, Any]) -> Any:
        data[key] = value
        return data

    return edit


def _duplicate_layer(data: dict[str, Any]) -> Any:
    data["layers"].append(data["layers"][0])
    return data


def _drop_summary(data: dict[str, Any]) -> Any:
    del data["summary"]
    return data


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "string-alpha": (_set_layer("alpha", "2.5"), "finite number"),
    "nan-alpha": (_set_layer("alpha", float("nan")), "finite number"),
    "infinite-alpha": (_set_layer("alpha", float("inf")), "finite number"),
    "bool-alpha": (_set_layer("alpha", True), "finite number"),
    "layers-of-ints": (_set("layers", [1]), "expected an object"),
    "layers-not-list": (_set("layers", {"a": 1}), "expected a list"),
    "summary-null": (_set("summary", None), "expected an object"),
    "summary-missing": (_drop_summary, "summary"),
    "name-not-string": (_set_layer("name", ["a"]), "expected a string"),
    "shape-not-list": (_set_layer("shape", 5), "expected a list"),
    "mp-empty": (_set_layer("mp", {}), "mp"),
    "duplicate-layer": (_duplicate_layer, "appears twice"),
    "other-schema": (_set("schema", "weightscope.report/99"), "schema"),
}

for _name, (_edit, _phrase) in TAMPERS.items():
    for _command in ("gate", "compare", "trend"):

        def _tampered(
            directory: Path,
            kit: Kit,
            edit: Callable[[dict[str, Any]], Any] = _edit,
            command: str = _command,
            phrase: str = _phrase,
        ) -> Scenario:
            bad = directory / "step-2.json"
            bad.write_text(json.dumps(edit(kit.report_data())))
            good = kit.report_in(directory, "step-1.json")
            args = {
                "gate": ["gate", str(bad)],
                "compare": ["compare", str(good), str(bad)],
                "trend": ["trend", str(good), str(bad)],
            }[command]
            return Scenario(args, error=phrase, keep=(bad, good))

        add("report-tampering", f"{_name}-{_command}", _tampered)


@case("report-tampering", "trend-cache-entries-damaged")
def _cache_entry(directory: Path, kit: Kit) -> Scenario:
    from typer.testing import CliRunner

    import weightscope.execution.cache as cache_module
    from weightscope.cli import app

    def settled() -> contextlib.AbstractContextManager[Any]:
        """A file written a moment ago counts as settled (tests cannot back-date a ctime)."""
        return mock.patch.object(cache_module, "RACY_SECONDS", 0.0)

    m = kit.model_in(directory, "step-1.safetensors")
    cache = directory / "cache"
    args = ["trend", str(m), "--cache", str(cache), "-f", "json"]
    with settled():
        assert CliRunner().invoke(app, args).exit_code == 0
    entries = list(cache.glob("reports/*/*.json"))
    assert entries
    for entry in entries:
        data = json.loads(entry.read_text())
        data["layers"][0]["alpha"] = "oops"
        entry.write_text(json.dumps(data))
    return Scenario(args, exit=0, patch=settled)


# --- 9. option values and injection into messages -------------------------------------------

for _name, _args, _phrase in (
    ("jump-k-nan", ["--jump-k", "nan"], "jump k"),
    ("jump-k-inf", ["--jump-k", "inf"], "jump k"),
    ("min-swing-nan", ["--min-swing", "nan"], "min swing"),
):

    def _trend_option(directory: Path, kit: Kit, args: list[str] = _args, phrase: str = _phrase) -> Scenario:
        return Scenario(
            [
                "trend",
                str(kit.report_in(directory, "step-1.json")),
                str(kit.report_in(directory, "step-2.json")),
                *args,
            ],
            error=phrase,
        )

    add("options", _name, _trend_option)


@case("options", "seed-negative-with-randomize")
def _seed(directory: Path, kit: Kit) -> Scenario:
    return Scenario(
        ["analyze", str(kit.model_in(directory)), "--seed", "-1", "--randomize", "--no-cache"], error="seed"
    )


@case("options", "debug-keeps-exit-code")
def _debug(directory: Path, kit: Kit) -> Scenario:
    def traceback_shown(stdout: str, stderr: str, where: Path) -> None:
        assert "Traceback" in stderr

    return Scenario(
        ["analyze", str(directory / "absent.safetensors"), "--debug"], error="no such file", check=traceback_shown
    )


@case("output-injection", "error-line-is-one-line")
def _one_line(directory: Path, kit: Kit) -> Scenario:
    target = directory / "a\nb\r\x1b]0;title\x07[bold]c.safetensors"

    def clean(stdout: str, stderr: str, where: Path) -> None:
        assert "\x1b" not in stderr and "\x07" not in stderr and "\r" not in stderr
        assert "[bold]" in stderr  # shown literally, not taken as markup

    return Scenario(["inspect", str(target)], error="no such file", check=clean)


@case("output-injection", "input-name-with-newline-and-ansi")
def _input_name(directory: Path, kit: Kit) -> Scenario:
    return Scenario(["analyze", str(directory / "evil\n::error::x\x1b[31m[red].safetensors")], error="no such file")


def _lines_start_with(prefix: str, count: int) -> Callable[[str, str, Path], None]:
    def check(stdout: str, stderr: str, where: Path) -> None:
        lines = stderr.splitlines()
        assert len(lines) == count and all(line.startswith(prefix) for line in lines), lines
        assert "\x1b" not in stderr

    return check


@case("output-injection", "wrote-line-with-newline-and-markup")
def _wrote_line(directory: Path, kit: Kit) -> Scenario:
    out = directory / "x\nPASS [red]all good\x1b[0m.json"
    return Scenario(
        ["analyze", str(kit.model_in(directory)), "-o", str(out), "--no-cache"],
        exit=0,
        check=_lines_start_with("wrote ", 1),
    )


@case("output-injection", "trend-progress-lines")
def _trend_lines(directory: Path, kit: Kit) -> Scenario:
    a = kit.report_in(directory, "step-1\n[bold]PASS.json")
    b = kit.report_in(directory, "step-2\x1b[2J.json")
    return Scenario(["trend", str(a), str(b), "-f", "json"], exit=0, check=_lines_start_with("[", 2))


@case("output-injection", "gate-verdict-line-source-forged")
def _gate_line(directory: Path, kit: Kit) -> Scenario:
    data = kit.report_data()
    data["source"] = "m\nweightscope gate passed on everything\x1b[0m"
    report = kit.report_in(directory, "r.json", data)
    return Scenario(["gate", str(report), "-o", str(directory / "g.json")], exit=(0, 1), check=_lines_start_with("", 2))


for _name, _numel in (("legacy-storage-declares-64GB", 2**34), ("legacy-storage-declares-64TB", 2**44)):

    def _legacy_bomb(directory: Path, kit: Kit, numel: int = _numel) -> Scenario:
        import torch

        values = torch.arange(16, dtype=torch.float32).reshape(4, 4)
        torch.save({"w": values}, directory / "leg.pt", _use_new_zipfile_serialization=False)
        data = (directory / "leg.pt").read_bytes()
        at = data.find(values.numpy().tobytes())  # the storage's bytes, after its 8-byte element count
        (directory / "leg.pt").write_bytes(data[: at - 8] + struct.pack("<q", numel) + data[at:])
        return Scenario(["inspect", str(directory / "leg.pt")], error="leg.pt", timeout=30)

    add("pickles", _name, _legacy_bomb)


_WITHOUT_DAC = (
    "import os, sys\n"
    "os.execvp('setpriv', ['setpriv', '--bounding-set=-dac_override,-dac_read_search',\n"
    "          '--inh-caps=-dac_override,-dac_read_search', sys.executable, '-m', 'weightscope', *sys.argv[1:]])\n"
)


def _unreadable(make_args: Callable[[Path, Kit], list[str]]) -> Callable[[Path, Kit], Scenario]:
    """Mode-000 files and directories, read by root without the capabilities that let root
    ignore them (setpriv), or by a plain user as is: EACCES, as CI users meet it."""

    def build(directory: Path, kit: Kit) -> Scenario:
        import shutil

        import pytest

        if os.geteuid() == 0 and shutil.which("setpriv") is None:
            pytest.skip("root without setpriv reads every file")
        args = make_args(directory, kit)
        for locked in (directory / "locked", directory / "locked.safetensors"):
            if locked.exists():
                os.chmod(locked, 0)
        cleanup = [
            lambda: [os.chmod(p, 0o700) for p in (directory / "locked", directory / "locked.safetensors") if p.exists()]
        ]
        if os.geteuid() == 0:
            return Scenario(args, error="Permission denied", subprocess=True, script=_WITHOUT_DAC, cleanup=cleanup)
        return Scenario(args, error="Permission denied", cleanup=cleanup)

    return build


def _locked_file(d: Path, kit: Kit) -> Path:
    return kit.model_in(d, "locked.safetensors")


def _locked_dir(d: Path, kit: Kit) -> Path:
    (d / "locked").mkdir()
    return kit.model_in(d / "locked")


for _name, _make in {
    "unreadable-file": lambda d, kit: ["analyze", str(_locked_file(d, kit)), "--no-cache"],
    "unreadable-directory": lambda d, kit: ["analyze", str(_locked_dir(d, kit).parent), "--no-cache"],
    "file-in-unreadable-directory": lambda d, kit: ["inspect", str(_locked_dir(d, kit))],
    "unreadable-gate-input": lambda d, kit: ["gate", str(_locked_file(d, kit))],
    "unreadable-config": lambda d, kit: [
        "analyze",
        str(kit.model_in(d)),
        "--config",
        str(_locked_file(d, kit)),
        "--no-cache",
    ],
    "output-in-unreadable-directory": lambda d, kit: [
        "analyze",
        str(kit.model_in(d)),
        "-f",
        "json",
        "-o",
        str(_locked_dir(d, kit).parent / "x.json"),
    ],
}.items():
    add("paths", _name, _unreadable(_make))


# --- 10. surfaces of GGUF, LoRA adapters, npz, the hub cache, user regexes, saved reports --
#
# Each case's name starts with the number of the fault class it reproduces (c01…c16). The
# hangs (c02–c06) run in a child under a watchdog (`Scenario.bound`, seconds of work after
# the imports) and an address-space limit (`Scenario.memory`, RLIMIT_AS).

#: An address-space limit for the children of bounded cases: the interpreter with numpy
#: and weightscope maps ~0.2 GB; an 8192² float32 matrix is 0.27 GB.
CHILD_MEMORY = 3 << 30


def bounded(args: list[str], bound: float = 10.0, **extra: Any) -> Scenario:
    """A run in a child process, killed as a hang after ``bound`` seconds of work and
    limited to `CHILD_MEMORY` of address space."""
    return Scenario(args, subprocess=True, bound=bound, memory=CHILD_MEMORY, timeout=180, **extra)


#: The one workflow command weightscope writes itself (gate -f github): an annotation whose
#: properties and message hold no ``::`` of their own.
_OWN_ANNOTATION = re.compile(r"::(?:error|warning) file=[^:]*,title=weightscope [a-z-]+::(?:(?!::).)*")


def _no_line_starts_with_a_command(stdout: str, stderr: str, where: Path) -> None:
    """GitHub's runner executes any output line that starts (after blanks) with ``::``;
    only gate's own annotations may, and nothing from a name or reason forges one."""
    for stream in (stdout, stderr):
        for line in stream.splitlines():
            assert not line.lstrip().startswith("::") or _OWN_ANNOTATION.fullmatch(line), line
        assert "\x1b" not in stream and "\x07" not in stream, stream[-2000:]


def _all(*checks: Callable[[str, str, Path], None]) -> Callable[[str, str, Path], None]:
    def check(stdout: str, stderr: str, where: Path) -> None:
        for one in checks:
            one(stdout, stderr, where)

    return check


# c01 + c16d: the hub cache -------------------------------------------------------------

_COMMIT = "c" * 40


def hub_cache(directory: Path, kit: Kit, ref: str = _COMMIT) -> tuple[Path, Path, Path]:
    """A hub cache laid out as huggingface_hub lays it out; returns (hub dir, the
    ``models--org--tiny`` entry, the blob of its weights)."""
    hub_dir = directory / "hub"
    repo = hub_dir / "models--org--tiny"
    snapshot = repo / "snapshots" / _COMMIT
    snapshot.mkdir(parents=True)
    blob = repo / "blobs" / ("e" * 64)
    blob.parent.mkdir()
    blob.write_bytes(kit.model.read_bytes())
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(ref)
    return hub_dir, repo, blob


def _hub_patch(hub_dir: Path) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    @contextlib.contextmanager
    def patched() -> Iterator[None]:
        import huggingface_hub.constants

        with (
            mock.patch.object(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_dir)),
            mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1"}),
        ):
            yield

    return patched


for _name, _source, _target in (
    ("c01-model-id-o-snapshot-file", "id", "snapshot"),
    ("c01-cache-dir-o-snapshot-file", "dir", "snapshot"),
    ("c01-model-id-o-blob", "id", "blob"),
    ("c01-cache-dir-html-blob", "dir", "blob-html"),
    ("c01-cache-dir-o-config-blob", "dir", "config"),
):

    def _hub_out(directory: Path, kit: Kit, source: str = _source, target: str = _target) -> Scenario:
        import pytest

        pytest.importorskip("huggingface_hub")
        hub_dir, repo, blob = hub_cache(directory, kit)
        snapshot = repo / "snapshots" / _COMMIT
        config_blob = repo / "blobs" / ("f" * 64)
        config_blob.write_text('{"model_type": "bert"}')
        (snapshot / "config.json").symlink_to(os.path.relpath(config_blob, snapshot))
        out = {"snapshot": snapshot / "model.safetensors", "blob": blob, "blob-html": blob, "config": config_blob}[
            target
        ]
        flag = ["--html"] if target == "blob-html" else ["-f", "json", "-o"]
        args = ["analyze", "org/tiny" if source == "id" else str(repo), *flag, str(out), "--no-cache"]
        return Scenario(args, error="input of this run", keep=(blob, config_blob), patch=_hub_patch(hub_dir))

    add("paths", _name, _hub_out)


@case("paths", "c16-hub-ref-points-outside-the-cache")
def _hub_ref_outside(directory: Path, kit: Kit) -> Scenario:
    import pytest

    pytest.importorskip("huggingface_hub")
    outside = directory / "elsewhere"
    outside.mkdir()
    kit.model_in(outside, "model.safetensors")
    hub_dir, repo, _ = hub_cache(directory, kit)
    (repo / "refs" / "main").write_text(os.path.relpath(outside, repo / "snapshots"))
    return Scenario(["analyze", str(repo), "--no-cache", "-f", "json"], error="outside", patch=_hub_patch(hub_dir))


# c02, c03, c16: GGUF ---------------------------------------------------------------------


def gguf_header(version: int = 3, tensors: int = 0, kvs: bytes = b"", n_kv: int = 0, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    return b"GGUF" + struct.pack(order + "IQQ", version, tensors, n_kv) + kvs


def gguf_key(key: str, kind: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + payload


_GGUF_ARRAY, _GGUF_UINT8, _GGUF_STRING = 9, 0, 8

for _name, _payload in (
    ("c02-gguf-array-of-2^40-uint8", struct.pack("<IQ", _GGUF_UINT8, 1 << 40)),
    ("c02-gguf-array-of-2^40-strings", struct.pack("<IQ", _GGUF_STRING, 1 << 40)),
    ("c02-gguf-nested-arrays", struct.pack("<IQ", _GGUF_ARRAY, 1 << 30) + struct.pack("<IQ", _GGUF_UINT8, 1 << 40)),
):
    for _command in ("inspect", "analyze"):

        def _gguf_array(directory: Path, kit: Kit, payload: bytes = _payload, command: str = _command) -> Scenario:
            import pytest

            pytest.importorskip("gguf")
            path = directory / "a.gguf"
            data = gguf_header(kvs=gguf_key("a", _GGUF_ARRAY, payload), n_kv=1)
            path.write_bytes(data + bytes(max(0, 57 - len(data))))
            return bounded(
                [command, str(path), "--no-cache"] if command == "analyze" else [command, str(path)], error="a.gguf"
            )

        add("gguf", f"{_name}-{_command}", _gguf_array)


def small_gguf(
    path: Path, *, blocks: int = 1, heads: Any = 4, metadata: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """A one-block llama GGUF (F32) and its Hugging Face twin's tensors."""
    import gguf

    rng = np.random.default_rng(3)
    hf = {
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((96, 64)).astype(np.float32),
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float32),
    }
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(blocks)
    if isinstance(heads, int) and not isinstance(heads, bool):
        writer.add_head_count(heads)
    elif isinstance(heads, str):
        writer.add_string("llama.attention.head_count", heads)
    elif isinstance(heads, bool):
        writer.add_bool("llama.attention.head_count", heads)
    for key, value in (metadata or {}).items():
        writer.add_uint32(key, value)
    writer.add_tensor("blk.0.ffn_up.weight", hf["model.layers.0.mlp.up_proj.weight"])
    writer.add_tensor("blk.0.attn_q.weight", hf["model.layers.0.self_attn.q_proj.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hf


for _name, _blocks in (("c03-gguf-block-count-10^9", 10**9), ("c03-gguf-block-count-2^32-1", 2**32 - 1)):

    def _gguf_blocks(directory: Path, kit: Kit, blocks: int = _blocks) -> Scenario:
        import pytest

        pytest.importorskip("gguf")
        hf = small_gguf(directory / "m.gguf", blocks=blocks)
        write_safetensors(directory / "hf.safetensors", hf)
        return bounded(
            ["compare", str(directory / "hf.safetensors"), str(directory / "m.gguf"), "--no-cache", "-f", "json"],
            exit=0,
        )

    add("gguf", _name, _gguf_blocks)


for _name, _heads in (("c10-gguf-head-count-string", "32"), ("c10-gguf-head-count-bool", True)):

    def _gguf_heads(directory: Path, kit: Kit, heads: Any = _heads) -> Scenario:
        import pytest

        pytest.importorskip("gguf")
        small_gguf(directory / "m.gguf", heads=heads)
        return Scenario(
            ["analyze", str(directory / "m.gguf"), "--no-cache", "-f", "json"], exit=0, check=reads_report(2, failed=0)
        )

    add("gguf", _name, _gguf_heads)


@case("gguf", "c16-gguf-big-endian")
def _gguf_big_endian(directory: Path, kit: Kit) -> Scenario:
    (directory / "be.gguf").write_bytes(gguf_header(big_endian=True) + bytes(64))
    return Scenario(["inspect", str(directory / "be.gguf")], error="big-endian")


@case("gguf", "c16-gguf-tensor-offset-misaligned")
def _gguf_misaligned(directory: Path, kit: Kit) -> Scenario:
    import pytest

    pytest.importorskip("gguf")
    import gguf

    path = directory / "m.gguf"
    small_gguf(path)
    reader = gguf.GGUFReader(path)
    tensor = reader.tensors[0]  # moved 4 bytes on, its data still lies inside the file
    data = bytearray(path.read_bytes())
    # the tensor info: name length and name, ndims, the dims, the type, then the offset
    start = data.find(tensor.name.encode()) + len(tensor.name) + 4 + 8 * len(tensor.shape) + 4
    (offset,) = struct.unpack_from("<Q", data, start)
    struct.pack_into("<Q", data, start, offset + 4)
    path.write_bytes(bytes(data))
    return Scenario(["analyze", str(path), "--no-cache"], error="align")


# c04, c05: patterns from files and users ---------------------------------------------------

_LONG_A = "a" * 33 + "!"


def lora_adapter(directory: Path, modules: dict[str, tuple[np.ndarray, np.ndarray]], config: dict[str, Any]) -> Path:
    """An adapter directory as PEFT saves it (``base_model.model.<module>.lora_A.weight``)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in modules.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = a
        tensors[f"base_model.model.{module}.lora_B.weight"] = b
    write_safetensors(directory / "adapter_model.safetensors", tensors)
    (directory / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, **config})
    )
    return directory


def lora_factors(d: int = 96, k: int = 64, r: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((r, k)).astype(np.float32), (0.02 * rng.standard_normal((d, r))).astype(np.float32)


for _command in ("analyze", "inspect", "compare"):

    def _redos_adapter(directory: Path, kit: Kit, command: str = _command) -> Scenario:
        adapter = lora_adapter(
            directory / "adapter",
            {_LONG_A: lora_factors(), "model.q_proj": lora_factors(seed=1)},
            {"rank_pattern": {"(a+)+b": 4}, "alpha_pattern": {"(a+)+b": 8}},
        )
        if command == "compare":
            base = write_safetensors(
                directory / "base.safetensors",
                {
                    f"{_LONG_A}.weight": np.ones((96, 64), np.float32),
                    "model.q_proj.weight": np.eye(96, 64, dtype=np.float32),
                },
            )
            return bounded(["compare", str(base), str(adapter), "--no-cache", "-f", "json"], exit=0)
        return bounded([command, str(adapter), *(["--no-cache", "-f", "json"] if command == "analyze" else [])], exit=0)

    add("patterns", f"c04-adapter-rank-pattern-redos-{_command}", _redos_adapter)


def _dotted_model(directory: Path) -> Path:
    """Names on which backtracking engines take exponential time for the patterns below."""
    rng = np.random.default_rng(2)
    names = ("model." + "a." * 40 + "weight", "model." + "a" * 40 + "!.weight", "lm_head.weight")
    return write_safetensors(
        directory / "d.safetensors", {n: rng.standard_normal((96, 64)).astype(np.float32) for n in names}
    )


for _name, _flag, _pattern in (
    ("c05-include-dotted-star", "--include", r"(.*\.)*lm_head$"),
    ("c05-exclude-a-plus-plus", "--exclude", r"(a+)+$"),
    ("c05-plot-layer-dotted-star", "--layer", r"(.*\.)*lm_head\.weight$"),
):

    def _redos_flag(directory: Path, kit: Kit, flag: str = _flag, pattern: str = _pattern) -> Scenario:
        model = _dotted_model(directory)
        if flag == "--layer":
            return bounded(
                ["plot", str(model), "--layer", pattern, "-d", str(directory / "p"), "--no-cache", "--no-randomize"],
                bound=30,
                exit=0,
            )
        return bounded(["analyze", str(model), flag, pattern, "--no-cache", "-f", "json"], exit=0)

    add("patterns", _name, _redos_flag)


@case("patterns", "c05-gate-config-exclude")
def _redos_gate_config(directory: Path, kit: Kit) -> Scenario:
    data = kit.report_data()
    data["layers"][0]["name"] = "model." + "a." * 40 + "weight"
    report = kit.report_in(directory, "r.json", data)
    config = directory / "pyproject.toml"
    config.write_text('[tool.weightscope.gate]\nexclude = ["(.*\\\\.)*lm_head$"]\n')
    return bounded(["gate", str(report), "--config", str(config)], exit=(0, 1))


@case("patterns", "c05-gate-ignore-flag")
def _redos_gate_flag(directory: Path, kit: Kit) -> Scenario:
    data = kit.report_data()
    data["layers"][0]["name"] = "model." + "a" * 40 + "!"
    report = kit.report_in(directory, "r.json", data)
    return bounded(["gate", str(report), "--ignore", "(a+)+$"], exit=(0, 1))


@case("patterns", "c05-trend-step-regex")
def _redos_step(directory: Path, kit: Kit) -> Scenario:
    a = kit.report_in(directory, "1" * 40 + "x.json")
    b = kit.report_in(directory, "2" * 40 + "x.json")
    return bounded(["trend", str(a), str(b), "--step-regex", r"(\d+)+y", "-f", "json"], exit=(0, 2))


@case("patterns", "c05-pattern-re2-cannot-run")
def _unsupported_pattern(directory: Path, kit: Kit) -> Scenario:
    return Scenario(["analyze", str(kit.model_in(directory)), "--include", r"(a)\1", "--no-cache"], error="--include")


# c06, c10: npz -----------------------------------------------------------------------------

#: An 8192² float32 zero matrix as a bzip2 member ``big.npy``: 441 bytes that decode to
#: 268 MB (written by zipfile with ZIP_BZIP2; regenerating it costs ~8 s).
BZIP2_BOMB = (
    "UEsDBC4AAAAMAAAAIQBS3xDt//////////8HABQAYmlnLm5weQEAEACAAAAQAAAAADUBAAAAAAAAQlpoOTFBWSZTWZ3Wv6kFfkBfoOAQQOR0dAEDQiCv"
    "Rd0KCAAACCAAlISU0iGJo09JiDTQPSeUEVU9TJggwjAIA0IflEAVVEgAoAqqJt+QBQBSSQjKyW4haOZmddHR1MnK+6loUczA9PwxKgfnPvn4jpD7JrJP"
    "1PlD4kb216zmNOq2JlJgSAEkkhP5igrJMprIcE8W+Ar8cgAGAAAAQQABhAJqMhUBLUhUBLmKCskymshwTxb4CvxyAAYAAABBAAGEAmoyFQEtSFQEuYoK"
    "yTKayHBPFvgK/HIABgAAAEEAAYQCajIVAS1IVAS5igrJMprIcE8W+Ar8cgAGAAAAQQABhAJqMhUBLUhUBLmKCskyms+duOugCVJCAAYAIABBAAGGYClN"
    "MERJGxCIkjxdyRThQkP2FnY0UEsBAi4DLgAAAAwAAAAhAFLfEO01AQAAgAAAEAcAAAAAAAAAAAAAAIABAAAAAGJpZy5ucHlQSwUGAAAAAAEAAQA1AAAA"
    "bgEAAAAA"
)


def _add_good_member(path: Path) -> None:
    with zipfile.ZipFile(path, "a") as archive, archive.open("good.npy", "w") as stream:
        np.lib.format.write_array(stream, np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32))


@case("npz", "c06-npz-bzip2-bomb-8192^2")
def _bzip2_bomb(directory: Path, kit: Kit) -> Scenario:
    import base64

    path = directory / "bomb.npz"
    path.write_bytes(base64.b64decode(BZIP2_BOMB))
    _add_good_member(path)
    return bounded(["analyze", str(path), "--no-cache", "-f", "json"], error="compression bomb")


@case("npz", "c06-npz-deflate-bomb-4096^2")
def _deflate_bomb(directory: Path, kit: Kit) -> Scenario:
    """At deflate's 1030:1 (65 KB for 67 MB): admitted, decoded, and short-cut as all-zero."""
    n = 4096
    path = directory / "bomb.npz"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("big.npy", "w", force_zip64=True) as stream,
    ):
        np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": (n, n)})
        chunk, left = bytes(1 << 24), n * n * 4
        while left:
            stream.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    _add_good_member(path)
    return bounded(
        ["analyze", str(path), "--no-cache", "-f", "json"], exit=0, check=reads_report(2, failed=1, phrase="all-zero")
    )


@case("npz", "c06-npz-constant-matrix-no-solve")
def _constant_npz(directory: Path, kit: Kit) -> Scenario:
    n = 4096
    path = directory / "c.npz"
    np.savez_compressed(path, big=np.full((n, n), 0.25, np.float32))
    _add_good_member(path)

    def closed_form(stdout: str, stderr: str, where: Path) -> None:
        layer = next(layer for layer in json.loads(stdout)["layers"] if layer["name"] == "big")
        assert layer["lambda_max"] == pytest_approx(0.25**2 * n * n), layer[
            "lambda_max"
        ]  # σ²max of c·11ᵀ (N×M): c²·N·M

    return bounded(
        ["analyze", str(path), "--no-cache", "-f", "json"],
        exit=0,
        check=_all(reads_report(2, failed=1, phrase="distinct positive"), closed_form),
    )


def pytest_approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=1e-5)


def _npz_member(kind: str) -> Callable[[Path, Kit], Scenario]:
    def build(directory: Path, kit: Kit) -> Scenario:
        path = directory / "m.npz"
        np.savez(path, good=np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32))
        buffer = __import__("io").BytesIO()
        np.lib.format.write_array(buffer, np.ones((96, 64), np.float32))
        if kind == "lzma-corrupt":
            with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_LZMA) as archive:
                archive.writestr("bad.npy", buffer.getvalue())
            data = bytearray(path.read_bytes())
            at = data.find(b"bad.npy") + len(b"bad.npy") + 20
            data[at : at + 40] = bytes(range(40))
            path.write_bytes(bytes(data))
        else:
            with zipfile.ZipFile(path, "a") as archive:
                archive.writestr("bad.npy", buffer.getvalue())
            data = bytearray(path.read_bytes())
            local = data.find(b"PK\x03\x04", data.find(b"good.npy"))
            central = data.find(b"PK\x01\x02" + b"\x00" * 0, data.rfind(b"good.npy") + 1)
            central = data.find(b"PK\x01\x02", central)
            if kind == "encrypted":
                struct.pack_into("<H", data, local + 6, 1)  # general purpose flag bit 0
                struct.pack_into("<H", data, central + 8, 1)
            else:  # an unknown compression method (99 is AE-x, 97 WavPack)
                struct.pack_into("<H", data, local + 8, 97)
                struct.pack_into("<H", data, central + 10, 97)
            path.write_bytes(bytes(data))
        return Scenario(
            ["analyze", str(path), "--no-cache", "-f", "json"],
            exit=(0, 2),
            error="m.npz",
            check=lambda out, err, where: reads_report(2, failed=1)(out, err, where) if out else None,
        )

    return build


for _kind in ("encrypted", "unknown-compression", "lzma-corrupt"):
    add("npz", f"c10-npz-member-{_kind}", _npz_member(_kind))


# c07: forged CI output ---------------------------------------------------------------------

FORGED_NAMES = (
    "::error title=ALL CLEAR::forged.weight",
    "::stop-commands::token.weight",
    "  ::add-mask::secret.weight",
)


def _forged_model(directory: Path, name: str = "m.safetensors", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_safetensors(
        directory / name, {n: rng.standard_normal((96, 64)).astype(np.float32) for n in FORGED_NAMES}
    )


for _command, _formats in (
    ("analyze", ("table", "csv", "md")),
    ("compare", ("table", "csv", "md")),
    ("trend", ("table", "csv", "md")),
    ("gate", ("text", "github")),
):
    for _format in _formats:

        def _forged(directory: Path, kit: Kit, command: str = _command, fmt: str = _format) -> Scenario:
            a = _forged_model(directory, "step-1.safetensors")
            b = _forged_model(directory, "step-2.safetensors", seed=1)
            args = {
                "analyze": ["analyze", str(a)],
                "compare": ["compare", str(a), str(b)],
                "trend": ["trend", str(a), str(b)],
                "gate": ["gate", str(a), "-v"],
            }[command]
            return Scenario([*args, "-f", fmt, "--no-cache"], exit=(0, 1), check=_no_line_starts_with_a_command)

        add("output-injection", f"c07-workflow-command-names-{_command}-{_format}", _forged)


@case("output-injection", "c07-gate-github-checkpoint-path-with-newline")
def _gate_path_newline(directory: Path, kit: Kit) -> Scenario:
    m = kit.model_in(directory, "m\n::error title=ALL CLEAR::ok.safetensors")
    return Scenario(["gate", str(m), "-f", "github", "--no-cache"], exit=(0, 1), check=_no_line_starts_with_a_command)


for _format in ("text", "github", "json"):

    def _gate_saved_names(directory: Path, kit: Kit, fmt: str = _format) -> Scenario:
        data = kit.report_data()
        layer = data["layers"][0]
        layer.update(
            name="a\x1b[31m\n::error title=ALL CLEAR::b\r\n", status="failed", reason="x\n::error::y\x1b[0m\x07"
        )
        for key in ("alpha", "verdict"):
            layer[key] = None
        data["layers"][1]["reasons"] = ["ok\n::warning::z"]
        report = kit.report_in(directory, "r.json", data)
        return Scenario(["gate", str(report), "-f", fmt, "-v"], exit=(0, 1), check=_no_line_starts_with_a_command)

    add("output-injection", f"c07-gate-{_format}-saved-report-names-and-reasons", _gate_saved_names)


# c08, c09, c10: adapters -------------------------------------------------------------------

for _command in ("inspect", "analyze"):

    def _plain_adapter(directory: Path, kit: Kit, command: str = _command) -> Scenario:
        adapter = lora_adapter(
            directory / "adapter",
            {"model.layers.0.self_attn.q_proj": lora_factors(), "model.layers.0.mlp.up_proj": lora_factors(seed=1)},
            {"target_modules": ["q_proj", "up_proj"]},
        )
        return Scenario([command, str(adapter), *(["--no-cache"] if command == "analyze" else [])], exit=0)

    add("adapters", f"c08-peft-adapter-{_command}", _plain_adapter)


_MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj")


def _no_lapack_chatter(stdout: str, stderr: str, where: Path) -> None:
    assert "DLASCL" not in stdout and "On entry to" not in stdout, stdout[:500]


for _command in ("analyze", "compare"):

    def _huge_alpha(directory: Path, kit: Kit, command: str = _command) -> Scenario:
        adapter = lora_adapter(
            directory / "adapter", {m: lora_factors(seed=i) for i, m in enumerate(_MODULES)}, {"lora_alpha": 1e308}
        )
        if command == "analyze":
            return bounded(
                ["analyze", str(adapter), "--no-cache", "-f", "json"],
                bound=60,
                exit=0,
                check=_all(_no_lapack_chatter, reads_report(2, failed=2, phrase="not finite")),
            )
        base = write_safetensors(
            directory / "base.safetensors",
            {
                f"{m}.weight": np.random.default_rng(i).standard_normal((96, 64)).astype(np.float32)
                for i, m in enumerate(_MODULES)
            },
        )
        return bounded(
            ["compare", str(base), str(adapter), "--no-cache", "-f", "json"],
            bound=60,
            exit=(0, 2),
            check=lambda out, err, where: _no_lapack_chatter(out, err, where) or (json.loads(out) if out else None),
        )

    add("adapters", f"c09-lora-alpha-1e308-{_command}", _huge_alpha)


for _name, _config, _phrase in (
    ("c10-adapter-r-400-digits", {"r": 10**400}, "r and lora_alpha"),
    ("c10-adapter-lora-alpha-400-digits", {"lora_alpha": 10**400}, "r and lora_alpha"),
    ("c10-adapter-rank-pattern-half", {"rank_pattern": {"q_proj": 0.5}}, "rank_pattern"),
    ("c10-adapter-alpha-pattern-400-digits", {"alpha_pattern": {"q_proj": 10**400}}, "alpha_pattern"),
    ("c10-adapter-rank-pattern-not-a-pattern", {"rank_pattern": {"(": 4}}, "rank_pattern"),
):

    def _hostile_config(directory: Path, kit: Kit, config: dict[str, Any] = _config, phrase: str = _phrase) -> Scenario:
        adapter = lora_adapter(directory / "adapter", {m: lora_factors(seed=i) for i, m in enumerate(_MODULES)}, {})
        raw = json.loads((adapter / "adapter_config.json").read_text())
        raw.update(config)
        (adapter / "adapter_config.json").write_text(json.dumps(raw))
        return Scenario(["analyze", str(adapter), "--no-cache"], error=phrase)

    add("adapters", _name, _hostile_config)


@case("adapters", "c10-compare-base-adapter-one-nan-factor")
def _nan_factor(directory: Path, kit: Kit) -> Scenario:
    a, b = lora_factors()
    a[0, 0] = np.nan
    adapter = lora_adapter(directory / "adapter", {_MODULES[0]: (a, b), _MODULES[1]: lora_factors(seed=1)}, {})
    base = write_safetensors(
        directory / "base.safetensors",
        {
            f"{m}.weight": np.random.default_rng(i).standard_normal((96, 64)).astype(np.float32)
            for i, m in enumerate(_MODULES)
        },
    )

    def one_failed(stdout: str, stderr: str, where: Path) -> None:
        changes = {change["name"]: change for change in json.loads(stdout)["layers"]}
        bad, good = changes[f"{_MODULES[0]}.weight"], changes[f"{_MODULES[1]}.weight"]
        assert bad["verdict_b"] == "failed" and "NaN" in bad["note"], bad
        assert good["update"] is not None and good["alpha_b"] is not None, good

    return Scenario(["compare", str(base), str(adapter), "--no-cache", "-f", "json"], exit=0, check=one_failed)


# c10: hostile numbers and text in saved reports ---------------------------------------------


def _strict_json(stdout: str, stderr: str, where: Path) -> None:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in the JSON output")

    json.loads(stdout, parse_constant=refuse)


for _name, _value in (("c10-report-alpha-400-digits", 10**400), ("c10-report-alpha-minus-400-digits", -(10**400))):
    for _command in ("gate", "compare", "trend"):

        def _big_alpha(directory: Path, kit: Kit, value: int = _value, command: str = _command) -> Scenario:
            data = kit.report_data()
            data["layers"][0]["alpha"] = value
            bad = directory / "step-2.json"
            bad.write_text(json.dumps(data))
            good = kit.report_in(directory, "step-1.json")
            args = {
                "gate": ["gate", str(bad)],
                "compare": ["compare", str(good), str(bad)],
                "trend": ["trend", str(good), str(bad)],
            }[command]
            return Scenario(args, error="finite number")

        add("report-tampering", f"{_name}-{_command}", _big_alpha)


for _command in ("gate", "compare", "trend"):

    def _extreme_alphas(directory: Path, kit: Kit, command: str = _command) -> Scenario:
        a, b = kit.report_data(), kit.report_data()
        a["layers"][0]["alpha"], b["layers"][0]["alpha"] = -1.7e308, 1.7e308
        a["layers"][1]["alpha"], b["layers"][1]["alpha"] = 1.7e308, -1.7e308
        ra, rb = kit.report_in(directory, "step-1.json", a), kit.report_in(directory, "step-2.json", b)
        args = {
            "gate": ["gate", str(rb), "--baseline", str(ra), "--set", "max-delta-alpha=0.5"],
            "compare": ["compare", str(ra), str(rb)],
            "trend": ["trend", str(ra), str(rb)],
        }[command]
        if command == "gate":
            args = ["gate", str(rb), "--baseline", str(ra), "--max-delta-alpha", "0.5"]
        return Scenario(
            [*args, "-f", "json"],
            exit=(0, 1, 2),
            check=lambda out, err, where: _strict_json(out, err, where) if out else None,
        )

    add("report-tampering", f"c10-report-alphas-plus-minus-1.7e308-{_command}", _extreme_alphas)


for _format in ("github", "text", "json"):

    def _surrogate(directory: Path, kit: Kit, fmt: str = _format) -> Scenario:
        data = kit.report_data()
        data["layers"][0]["name"] = "model.\ud800.weight"
        report = kit.report_in(directory, "r.json", data)  # json.dumps writes the surrogate as \\ud800
        return Scenario(["gate", str(report), "-f", fmt, "-v"], exit=(0, 1))

    add("report-tampering", f"c10-lone-surrogate-layer-name-gate-{_format}", _surrogate)


# c11: float64 layers beyond float32's range -------------------------------------------------

for _name, _scale in (("c11-f64-times-1e160", 1e160), ("c11-f64-times-1e-200", 1e-200), ("c11-f64-times-1e100", 1e100)):

    def _f64_scaled(directory: Path, kit: Kit, scale: float = _scale) -> Scenario:
        from tests.helpers import planted_power_law

        w = planted_power_law(256, 128, alpha=3.0, seed=4).astype(np.float64)
        path = write_safetensors(
            directory / "f64.safetensors",
            {"plain.weight": w, "scaled.weight": w * scale, "other.weight": w[:, ::-1].copy()},
        )

        def same_alpha(stdout: str, stderr: str, where: Path) -> None:
            layers = {layer["name"]: layer for layer in json.loads(stdout)["layers"]}
            plain, scaled = layers["plain.weight"], layers["scaled.weight"]
            assert scaled["status"] == "ok", scaled["reason"]
            # Under "auto" both are solved in float32, and c·W (the rescaled copy) rounds to
            # other float32 values than W: the alphas agree to float32's precision. Seeds
            # 4–7 here: 7e-8–1.3e-6 relative (0 and 1e-15 under --eig-dtype float64); a
            # tail or xmin of its own would move alpha by 1e-3 or more.
            assert abs(scaled["alpha"] - plain["alpha"]) <= 1e-5 * plain["alpha"], (scaled["alpha"], plain["alpha"])
            assert scaled["verdict"] == plain["verdict"]
            if scaled["lambda_max"] is not None:  # reported in float64 where float64 holds it
                assert abs(scaled["lambda_max"] / (plain["lambda_max"] * scale**2) - 1) < 1e-6

        return Scenario(
            ["analyze", str(path), "--no-cache", "-f", "json"],
            exit=0,
            check=_all(_strict_json, reads_report(3, failed=0), same_alpha),
        )

    add("tensor-contents", _name, _f64_scaled)


# c12: the spectrum cache's entries ----------------------------------------------------------


def _settled() -> contextlib.AbstractContextManager[Any]:
    import weightscope.execution.cache as cache_module

    return mock.patch.object(cache_module, "RACY_SECONDS", 0.0)


def _cache_tamper(edit: Callable[[Path, list[Path]], None], child: bool = False) -> Callable[[Path, Kit], Scenario]:
    """Fill a cache, tamper with its spectrum entries, and rerun: the results must be the
    first run's. ``child``: the rerun is a bounded child process (a FIFO blocks a worker
    thread, which no in-process timer can interrupt), started once the checkpoint is old
    enough to be cached without patching `RACY_SECONDS`."""

    def build(directory: Path, kit: Kit) -> Scenario:
        from typer.testing import CliRunner

        from weightscope.cli import app

        rng = np.random.default_rng(7)
        model = write_safetensors(
            directory / "m.safetensors",
            {f"l.{i}.weight": rng.standard_normal((192, 128)).astype(np.float32) * (i + 1) for i in range(2)},
        )
        other = write_safetensors(
            directory / "o.safetensors",
            {f"l.{i}.weight": rng.standard_normal((192, 128)).astype(np.float32) * 10 for i in range(2)},
        )
        cache, spare = directory / "cache", directory / "spare"
        args = ["analyze", str(model), "--cache", str(cache), "-f", "json"]
        with _settled():
            first = CliRunner().invoke(app, args)
            assert first.exit_code == 0, first.output
            assert CliRunner().invoke(app, ["analyze", str(other), "--cache", str(spare), "-f", "json"]).exit_code == 0
        entries = sorted(cache.glob("spectra/*/*.npz"))
        assert entries
        edit(directory, entries)
        expected = {
            layer["name"]: (layer["lambda_max"], layer["verdict"], layer["alpha"])
            for layer in json.loads(first.stdout)["layers"]
        }

        def unchanged(stdout: str, stderr: str, where: Path) -> None:
            got = {
                layer["name"]: (layer["lambda_max"], layer["verdict"], layer["alpha"])
                for layer in json.loads(stdout)["layers"]
            }
            assert got == expected

        if child:
            import time

            from weightscope.execution.cache import RACY_SECONDS

            time.sleep(max(0.0, os.stat(model).st_ctime + RACY_SECONDS + 0.1 - time.time()))
            return bounded(args, exit=0, check=unchanged)
        return Scenario(args, exit=0, patch=_settled, check=unchanged, timeout=20)

    return build


def _to_symlinks(directory: Path, entries: list[Path]) -> None:
    spare = sorted((directory / "spare").glob("spectra/*/*.npz"))
    for entry, target in zip(entries, spare, strict=False):
        entry.unlink()
        entry.symlink_to(target)


def _to_fifos(directory: Path, entries: list[Path]) -> None:
    for entry in entries:
        entry.unlink()
        os.mkfifo(entry)


def _rewrite_evals(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path, list[Path]], None]:
    def edit(directory: Path, entries: list[Path]) -> None:
        for entry in entries:
            with np.load(entry) as stored:
                arrays = {name: stored[name] for name in stored.files}
            arrays["evals"] = transform(arrays["evals"])
            with open(entry, "wb") as sink:
                np.savez(sink, **arrays)

    return edit


def _negative_top(evals: np.ndarray) -> np.ndarray:
    evals = evals.copy()
    evals[0] = -evals[-1]
    return evals


add("cache-entries", "c12-entry-replaced-by-symlink", _cache_tamper(_to_symlinks))
add("cache-entries", "c12-entry-replaced-by-fifo", _cache_tamper(_to_fifos, child=True))
add("cache-entries", "c12-evals-out-of-order", _cache_tamper(_rewrite_evals(lambda e: e[::-1].copy())))
add(
    "cache-entries",
    "c12-evals-shuffled",
    _cache_tamper(_rewrite_evals(lambda e: np.random.default_rng(0).permutation(e))),
)
add("cache-entries", "c12-evals-negative", _cache_tamper(_rewrite_evals(_negative_top)))


# c13: in-memory state dicts ------------------------------------------------------------------

_IN_MEMORY = """
import json, sys, warnings
import torch, weightscope
from weightscope.execution.plan import Execution
warnings.simplefilter("ignore")
good = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
bad = {{"meta": lambda: torch.empty(96, 64, device="meta"), "sparse": lambda: torch.randn(96, 64).to_sparse(),
        "csr": lambda: torch.randn(96, 64).to_sparse_csr(),
        "nested": lambda: torch.nested.nested_tensor([torch.randn(96, 64), torch.randn(80, 64)])}}[{kind!r}]()
report = weightscope.analyze({{"good.weight": good, "bad.weight": bad, "also.weight": good * 2}}, execution=Execution(cache=False, workers=1))
print(json.dumps(report.to_dict()))
"""

for _kind in ("meta", "sparse", "csr", "nested"):

    def _in_memory(directory: Path, kit: Kit, kind: str = _kind) -> Scenario:
        def good_layers_kept(stdout: str, stderr: str, where: Path) -> None:
            layers = {layer["name"]: layer for layer in json.loads(stdout)["layers"]}
            assert layers["good.weight"]["status"] == "ok" and layers["also.weight"]["status"] == "ok", layers
            if "bad.weight" in layers:
                assert layers["bad.weight"]["status"] == "failed" and layers["bad.weight"]["reason"]

        return Scenario(
            [], exit=0, subprocess=True, script=_IN_MEMORY.format(kind=kind), check=good_layers_kept, timeout=120
        )

    add("in-memory", f"c13-one-{_kind}-tensor-beside-good", _in_memory)


# c14: plot file names -------------------------------------------------------------------------

for _name, _names in (
    ("c14-plot-slash-and-underscore", ("a/b.weight", "a_b.weight")),
    ("c14-plot-non-ascii", ("ü.weight", "€.weight")),
    ("c14-plot-300-character-name", ("x" * 300 + ".weight", "y" * 20 + ".weight")),
):

    def _plot_names(directory: Path, kit: Kit, names: tuple[str, ...] = _names) -> Scenario:
        import pytest

        pytest.importorskip("matplotlib")
        rng = np.random.default_rng(0)
        model = write_safetensors(
            directory / "m.safetensors", {n: rng.standard_normal((96, 64)).astype(np.float32) for n in names}
        )
        out = directory / "plots"

        def one_file_each(stdout: str, stderr: str, where: Path) -> None:
            files = sorted(p.name for p in out.iterdir())
            assert len(files) == len(names), files
            assert all(len(f.encode()) <= 255 for f in files)

        return Scenario(
            ["plot", str(model), "--layer", ".", "-d", str(out), "--no-cache", "--no-randomize"],
            exit=0,
            check=one_file_each,
            timeout=120,
        )

    add("plots", _name, _plot_names)


# c15: loading saved reports --------------------------------------------------------------------


@case("report-tampering", "c15-gate-of-a-20000-layer-report")
def _big_report(directory: Path, kit: Kit) -> Scenario:
    data = kit.report_data()
    layer = data["layers"][0]
    data["layers"] = [{**layer, "name": f"model.layers.{i}.mlp.up_proj.weight"} for i in range(20_000)]
    report = kit.report_in(directory, "big.json", data)
    return Scenario(["gate", str(report), "-f", "json"], exit=(0, 1), timeout=30)


# c16: the smaller ones -----------------------------------------------------------------------


@case("options", "c16-cache-max-scientific-notation")
def _cache_max(directory: Path, kit: Kit) -> Scenario:
    return Scenario(
        ["analyze", str(kit.model_in(directory)), "--cache", str(directory / "c"), "-f", "json"],
        exit=0,
        check=reads_report(2, failed=0),
        patch=lambda: mock.patch.dict(os.environ, {"WEIGHTSCOPE_CACHE_MAX": "1e9"}),
    )


@case("options", "c16-cache-max-garbage-is-a-warning")
def _cache_max_bad(directory: Path, kit: Kit) -> Scenario:
    def warned(stdout: str, stderr: str, where: Path) -> None:
        assert "WEIGHTSCOPE_CACHE_MAX" in stderr

    return Scenario(
        ["analyze", str(kit.model_in(directory)), "--cache", str(directory / "c"), "-f", "json"],
        exit=0,
        check=_all(reads_report(2, failed=0), warned),
        patch=lambda: mock.patch.dict(os.environ, {"WEIGHTSCOPE_CACHE_MAX": "lots"}),
    )


# --- 11. the surfaces added with watch and gate --write-baseline ---------------------------


def _run_dir(directory: Path, kit: Kit) -> Path:
    run = directory / "run"
    run.mkdir()
    kit.model_in(run, "step-1.safetensors")
    kit.model_in(run, "step-2.safetensors")
    old = os.stat(run / "step-1.safetensors").st_mtime - 60  # settled: written a minute ago
    for name in ("step-1.safetensors", "step-2.safetensors"):
        os.utime(run / name, (old, old))
    return run


@case("paths", "watch-run-with-fifo-and-special-links")
def _watch_specials(directory: Path, kit: Kit) -> Scenario:
    run = _run_dir(directory, kit)
    os.mkfifo(run / "step-3.safetensors")
    (run / "step-4.safetensors").symlink_to("/dev/zero")
    (run / "step-5.safetensors").symlink_to(run / "step-5.safetensors")  # a loop
    (run / "step-6.safetensors").symlink_to(directory / "gone")  # dangling
    (run / "step-7.safetensors").symlink_to(kit.model)  # a link to a real checkpoint: fine
    return bounded(["watch", str(run), "--once", "--settle", "0", "--no-cache"], bound=60, exit=(0, 1, 2))


for _flag in ("--json", "--log"):

    def _watch_out_is_member(directory: Path, kit: Kit, flag: str = _flag) -> Scenario:
        run = _run_dir(directory, kit)
        member = run / "step-1.safetensors"
        return Scenario(
            ["watch", str(run), "--once", "--settle", "0", flag, str(member)], error="input of this run", keep=(member,)
        )

    add("paths", f"watch-{_flag.strip('-')}-is-a-checkpoint-of-the-run", _watch_out_is_member)


@case("patterns", "watch-step-regex")
def _watch_step_regex(directory: Path, kit: Kit) -> Scenario:
    run = directory / "run"
    run.mkdir()
    kit.model_in(run, "1" * 40 + "x.safetensors")
    kit.model_in(run, "2" * 40 + "x.safetensors")
    return bounded(
        ["watch", str(run), "--once", "--settle", "0", "--step-regex", r"(\d+)+y", "--no-cache"],
        bound=30,
        exit=(0, 1, 2),
    )


@case("output-injection", "watch-forged-checkpoint-names")
def _watch_forged(directory: Path, kit: Kit) -> Scenario:
    run = directory / "run"
    run.mkdir()
    kit.model_in(run, "::error title=ALL CLEAR::step-1.safetensors")
    kit.model_in(run, "step-2\n::warning::x\x1b[31m.safetensors")
    return Scenario(
        ["watch", str(run), "--once", "--settle", "0", "--no-cache"],
        exit=(0, 1),
        check=_no_line_starts_with_a_command,
        timeout=120,
    )


def _needs_write_baseline() -> None:
    """gate --write-baseline lands with the baseline workflow; until then its cases skip."""
    import pytest
    from typer.testing import CliRunner

    from weightscope.cli import app

    if "--write-baseline" not in CliRunner().invoke(app, ["gate", "--help"], terminal_width=200).stdout:
        pytest.skip("this build's gate has no --write-baseline")


def _baseline_target(make: Callable[[Path, Path], Path], phrase: str) -> Callable[[Path, Kit], Scenario]:
    def build(directory: Path, kit: Kit) -> Scenario:
        _needs_write_baseline()
        m = kit.model_in(directory)
        config = directory / "policy.toml"
        config.write_text("[tool.weightscope.gate]\n")
        target = make(directory, m)
        return Scenario(
            ["gate", str(m), "--config", str(config), "--write-baseline", str(target), "--no-cache"],
            error=phrase,
            keep=(m, config),
        )

    return build


def _link_to(directory: Path, target: Path) -> Path:
    (directory / "base.json").symlink_to(target)
    return directory / "base.json"


def _hard_link_to(directory: Path, target: Path) -> Path:
    os.link(target, directory / "base.json")
    return directory / "base.json"


for _name, _make, _phrase in (
    ("is-the-checkpoint", lambda d, m: m, "input of this run"),
    ("symlink-to-the-checkpoint", lambda d, m: _link_to(d, m), "input of this run"),
    ("hard-link-to-the-checkpoint", lambda d, m: _hard_link_to(d, m), "input of this run"),
    ("is-the-config", lambda d, m: d / "policy.toml", "input of this run"),
    ("is-a-directory", lambda d, m: d, "is a directory"),
    ("in-a-missing-directory", lambda d, m: d / "nowhere" / "base.json", "does not exist"),
):
    add("paths", f"gate-write-baseline-{_name}", _baseline_target(_make, _phrase))


@case("paths", "gate-write-baseline-and-o-one-file")
def _baseline_and_output(directory: Path, kit: Kit) -> Scenario:
    _needs_write_baseline()
    m = kit.model_in(directory)
    return Scenario(
        ["gate", str(m), "--write-baseline", str(directory / "x.json"), "-o", str(directory / "x.json"), "--no-cache"],
        error="two outputs name one file",
        keep=(m,),
    )


@case("output-injection", "gate-write-baseline-forged-names")
def _baseline_forged(directory: Path, kit: Kit) -> Scenario:
    _needs_write_baseline()
    m = _forged_model(directory)
    return Scenario(
        ["gate", str(m), "--write-baseline", str(directory / "base.json"), "--no-cache"],
        exit=(0, 1),
        check=_no_line_starts_with_a_command,
    )
