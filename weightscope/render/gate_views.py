"""Views of a `GateResult` that CI systems show natively: text, GitHub annotations, JUnit XML.

Every failed check is one line naming the layer, the finding (rule and message), the
limit and the one-line fix; the failures a baseline accepted are listed after them.
"""

from __future__ import annotations

import re

from weightscope.commands.gate.rules import ACCEPTED, FAIL, SKIP, WARN, Check, GateResult
from weightscope.errors import one_line
from weightscope.render.formats import Formats, json_text

_SHOWN = (FAIL, WARN)


def check_line(check: Check) -> str:
    """One check on one line (names and reasons come from files: `one_line`); a failure
    ends with its fix."""
    line = one_line(f"[{check.rule}] {check.layer}: {check.message} (limit {check.limit})")
    return f"{line}. Fix: {check.fix}" if check.status == FAIL and check.fix else line


def verdict_line(result: GateResult) -> str:
    c = result.counts
    outcome = "passed" if result.passed else "FAILED"
    line = (
        f"weightscope gate {outcome} on {one_line(result.source)}: {c[FAIL]} violation(s), {c[WARN]} warning(s), "
        f"{c['pass']} check(s) passed, {c[SKIP]} skipped"
    )
    if result.baseline is not None:
        line += f", {c[ACCEPTED]} accepted because the baseline {one_line(result.baseline)} has them"
    if result.base is not None:
        line += f" (adapter judged on the base model {one_line(result.base)})"
    if c[SKIP]:
        line += f" (NOT checked: {c[SKIP]} check(s) lacked their input; --strict would fail them)"
    if result.excluded:
        line += f"; {len(result.excluded)} layer(s) excluded by the gate config"
    return line


#: What a failing run without a baseline prints last: how to accept today's findings once.
ACCEPT_HINT = (
    "to accept today's findings once and fail only on new or worse ones: "
    "weightscope gate {source} --write-baseline baseline.json, then gate with --baseline baseline.json"
)


def to_text(result: GateResult) -> str:
    lines = [f"{check.status.upper()} {check_line(check)}" for check in result.checks if check.status in _SHOWN]
    accepted = [f"ACCEPTED {check_line(check)}" for check in result.accepted]
    first_run = not result.passed and result.baseline is None and result.base is None
    hint = [ACCEPT_HINT.format(source=result.source)] if first_run else []
    return "\n".join([*lines, *accepted, verdict_line(result), *hint]) + "\n"


def _escape_data(text: str) -> str:
    """A workflow command's message: GitHub decodes %25, %0D and %0A, so a layer name with
    a newline can never start a command of its own."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value: also ':' and ',' (they end the value)."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# Characters XML 1.0 does not allow at all (not even escaped): C0 controls but tab, LF,
# CR; lone surrogates; U+FFFE and U+FFFF.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` with every character XML cannot carry written as a visible \\xNN (or
    \\uNNNN) escape; ElementTree escapes the rest (<, &, quotes)."""
    return _XML_INVALID.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def to_github(result: GateResult) -> str:
    """GitHub Actions workflow commands: ``::error file=…,title=…::message`` per failure,
    ``::warning`` per warning, ``::notice`` per finding the baseline accepted."""
    commands = {FAIL: "error", WARN: "warning", ACCEPTED: "notice"}
    lines = []
    for check in result.checks:
        command = commands.get(check.status)
        if command is None:
            continue
        properties = f"file={_escape_property(result.source)},title={_escape_property(f'weightscope {check.rule}')}"
        lines.append(f"::{command} {properties}::{_escape_data(check_line(check))}")
    return "\n".join([*lines, verdict_line(result)]) + "\n"


def to_junit(result: GateResult) -> str:
    """JUnit XML: one testcase per rule × layer (classname weightscope.<rule>, name the layer)."""
    import xml.etree.ElementTree as ET  # lazy: 25 ms of every command's start-up otherwise

    c = result.counts
    totals = {"tests": str(len(result.checks)), "failures": str(c[FAIL]), "errors": "0", "skipped": str(c[SKIP])}
    suites = ET.Element("testsuites", name="weightscope gate", **totals)  # type: ignore[arg-type]  # attribute keywords: the stubs fear one is attrib
    suite = ET.SubElement(suites, "testsuite", name=_xml_text(f"weightscope gate: {result.source}"), **totals)  # type: ignore[arg-type]  # attribute keywords: the stubs fear one is attrib
    for check in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"weightscope.{check.rule}", name=_xml_text(check.layer))
        if check.status == FAIL:
            failure = ET.SubElement(case, "failure", message=_xml_text(check.message), type=check.rule)
            failure.text = _xml_text(check_line(check))
        elif check.status == SKIP:
            ET.SubElement(case, "skipped", message=_xml_text(check.message))
        elif check.status in (WARN, ACCEPTED):
            ET.SubElement(case, "system-out").text = _xml_text(
                f"{'warning' if check.status == WARN else 'accepted'}: {check_line(check)}"
            )
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


#: The formats of a gate's result (`weightscope.render.formats`).
GATE_FORMATS: Formats = {"text": to_text, "json": json_text, "github": to_github, "junit": to_junit}
