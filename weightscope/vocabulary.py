"""The one vocabulary of findings: every verdict and flag a layer can carry, defined once.

A *finding* is anything the checks say about a layer: its **verdict** (the one reading a
layer gets, chosen by precedence) or a **flag** (a further observation, or the reason
behind a verdict). Each is one `Finding` record here: its name, severity, marker, what it
means in plain words and what to do about it. Every consumer reads these records — the
checks that decide the verdict (precedence), the terminal table and "what to look at"
(colour, advice), the HTML (colour, advice), the plots (marker), compare ("did it get
worse": severity), trend ("not yet trained": `Finding.untrained`) and the gate (which
findings fail by default: severity) — so a new finding is one new record, and a renamed
one cannot drift apart between views. tests/test_architecture.py fails when a module
spells out a table of verdict names of its own.

Severity is what a finding asks of the user, not how alarming its number looks, and it
alone decides colour and the gate (a finding is not a failure):

- ``ok``: nothing to do (healthy).
- ``note``: worth knowing, nothing to fix (no reading of alpha, a trap that moves
  nothing, a remark about the fit).
- ``warning``: worth a look; the default gate does not fail them (a rule can opt in).
- ``failure``: broken weights or a broken analysis; the default gate fails them.

To add a finding: append a `Finding` to `FINDINGS` (a verdict also needs its place in
`VERDICTS`, the precedence order), then raise it where it is decided. Names of old
reports that were renamed since stay readable through `RENAMED`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    """What a finding asks of the user; ordered, so "worse" is a comparison."""

    OK = 0
    NOTE = 1
    WARNING = 2
    FAILURE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: Colour of each severity in the terminal (rich styles) and the HTML (a CSS class of the
#: same name: `render.html`). Colour follows severity only, so nothing looks like a
#: failure unless the default gate would fail it.
SEVERITY_STYLES = {
    Severity.OK: "green",
    Severity.NOTE: "dim",
    Severity.WARNING: "yellow",
    Severity.FAILURE: "bold red",
}


@dataclass(frozen=True)
class Finding:
    """One verdict or flag: what it is called, how serious, how drawn, what it means, what to do.

    ``meaning`` and ``advice`` are one plain sentence each, for someone who knows what a
    weight matrix is but not HTSR; the layer's own numbers are in its reasons.
    ``marker`` (verdicts only) is a matplotlib marker name that the HTML's SVG draws as the
    same shape. ``untrained`` marks the verdicts that say a layer has not (yet) learned.
    """

    name: str
    severity: Severity
    meaning: str
    advice: str
    marker: str = ""
    untrained: bool = False

    @property
    def style(self) -> str:
        return SEVERITY_STYLES[self.severity]

    @property
    def text(self) -> str:
        """The meaning and the advice, as the JSON's ``advice`` and the views show them."""
        return f"{self.meaning} {self.advice}"


#: The verdict of a layer whose alpha carries no information (`LayerResult.has_reading`).
NO_READING = "no-reading"

#: Verdicts in order of precedence: the first one a layer's checks raise is its verdict.
#: First what makes alpha meaningless (a collapsed rank or a correlation trap produce a
#: small alpha by themselves; a random-like spectrum has no tail), then a failed
#: analysis, then "no reading" (alpha carries no information), and only then the HTSR
#: reading of alpha itself.
VERDICTS = (
    "rank-collapsed",
    "correlation-trap",
    "looks-untrained",
    "random-like",
    "failed",
    "no-reading",
    "over-trained",
    "under-trained",
    "healthy",
)

#: How sure a reading of alpha is (`LayerResult.confidence`; None: no reading).
CONFIDENCES = {
    "solid": "the exact power law fits the tail, and alpha is stable within its own error",
    "approximate": "alpha is stable within its own error, but the exact power law is rejected: "
    "alpha summarises a heavy tail that is not exactly a power law",
}

FINDINGS: tuple[Finding, ...] = (
    # --- verdicts ---------------------------------------------------------------------
    Finding("healthy", Severity.OK, "Alpha lies in the band of well-trained layers.", "Nothing to do.", marker="o"),
    Finding(
        "no-reading",
        Severity.NOTE,
        "Alpha carries no information about training here (too small a tail, alpha unstable "
        "beyond its own error, or a tail that the random bulk's edge or the entries' spread makes); "
        "this is not a fault.",
        "Nothing to fix: judge this layer by its neighbours of the same kind, or over a run with `trend`.",
        marker="o",
    ),
    Finding(
        "over-trained",
        Severity.WARNING,
        "Alpha is below the band: the layer's spectrum is unusually heavy-tailed, which HTSR reads as "
        "over-fit or over-trained.",
        "Compare with the base model or an earlier checkpoint (`compare`, `trend`); if alpha keeps "
        "falling, consider stopping earlier, a lower learning rate or more regularisation.",
        marker="v",
    ),
    Finding(
        "under-trained",
        Severity.WARNING,
        "Alpha is above the band: the layer has learned little structure yet.",
        "Expected early in training or for layers a task barely uses; if it persists at the end of "
        "training, check that the layer receives gradient (frozen, detached, tiny learning rate).",
        marker="^",
        untrained=True,
    ),
    Finding(
        "random-like",
        Severity.WARNING,
        "The spectrum cannot be told from that of a random matrix of the same shape, so alpha says nothing "
        "here; the entries do not look like an initial draw, and learned structure can still sit in the "
        "singular vectors (a spectrum is not the whole matrix).",
        "Check that the layer moved in training: compare it with the base model or an earlier checkpoint "
        "(`compare`, `trend`); if it did not move, treat it as untrained. The gate fails it only with "
        "`--fail-on-random-like` (looks-untrained fails by default).",
        marker="p",
        untrained=True,
    ),
    Finding(
        "looks-untrained",
        Severity.FAILURE,
        "The spectrum is random-like and the entries look like a fresh initial draw (their law and scale "
        "match an initialiser): the layer looks untrained or reset.",
        "Check that the weights were loaded and trained (a reset, a skipped load, a frozen layer); a layer "
        "the training never uses (e.g. a sentence-transformer's pooler) can be accepted with the gate's "
        "exclude (the FAIL line names the pattern).",
        marker="s",
        untrained=True,
    ),
    Finding(
        "correlation-trap",
        Severity.FAILURE,
        "A few outsized weights dominate the spectrum and change alpha's reading.",
        "Look at the listed entries (row, col): a loading bug, an overflow or a diverging update "
        "often leaves such values; clip or re-train if they are not intended.",
        marker="X",
    ),
    Finding(
        "rank-collapsed",
        Severity.FAILURE,
        "A large share of the layer's directions are numerically zero: it uses far fewer dimensions than its shape.",
        "Check for dead units, a collapse during training or a pruning/merge step that zeroed the matrix.",
        marker="D",
    ),
    Finding(
        "failed",
        Severity.FAILURE,
        "The layer could not be analysed (non-finite weights, or no spectrum to fit).",
        "Read the reason: NaN or inf weights mean a diverged or corrupted checkpoint.",
        marker="x",
    ),
    # --- flags: why there is no reading -----------------------------------------------
    Finding(
        "tiny-tail",
        Severity.NOTE,
        "The spectrum's tail holds too few eigenvalues for alpha to mean anything.",
        "Nothing to fix; small matrices often have no usable tail.",
    ),
    Finding(
        "unstable-alpha",
        Severity.NOTE,
        "Alpha moves more than its own standard error when the tail's start shifts slightly.",
        "Nothing to fix; alpha is not a stable summary of this spectrum.",
    ),
    Finding(
        "bulk-edge-tail",
        Severity.NOTE,
        "The fitted tail is the upper edge of a random-looking bulk, not a heavy tail.",
        "Nothing to fix; alpha describes the bulk's edge, not training.",
    ),
    Finding(
        "shuffled-tail",
        Severity.NOTE,
        "The tail hardly rises above the largest eigenvalue of the layer's shuffled copy: short, or sitting on "
        "a tail the copy has too (sparse or heavy-tailed entries); the entries make it, not learned correlations.",
        "Nothing to fix; judge the layer by its neighbours of the same kind, or compare it with an earlier checkpoint.",
    ),
    Finding(
        "fit-failed",
        Severity.NOTE,
        "No power law could be fitted to the spectrum.",
        "Nothing to fix unless the weights are broken (see the reason).",
    ),
    Finding(
        "non-finite",
        Severity.FAILURE,
        "The weights hold NaN or inf values.",
        "The checkpoint diverged or is corrupted: go back to an earlier one.",
    ),
    # --- flags: how close the tail is to an exact power law (the fit's confidence) ----
    Finding(
        "small-tail",
        Severity.NOTE,
        "The tail is too short to test whether it is exactly a power law.",
        "Nothing to fix; alpha is read as an approximate summary of the tail.",
    ),
    Finding(
        "ks-reject",
        Severity.NOTE,
        "The tail is not exactly a power law (KS test).",
        "Nothing to fix; alpha is read as an approximate summary of the tail.",
    ),
    Finding(
        "lognormal-better",
        Severity.NOTE,
        "A lognormal describes the tail better than a power law.",
        "Nothing to fix; alpha is read as an approximate summary of the tail.",
    ),
    Finding(
        "exponential-better",
        Severity.NOTE,
        "An exponential describes the tail better than a power law (a light tail).",
        "Nothing to fix; alpha is read as an approximate summary of the tail.",
    ),
    # --- flags: further observations ---------------------------------------------------
    Finding(
        "alpha-low", Severity.NOTE, "Alpha is below the band.", "See the verdict: it says whether alpha can be read."
    ),
    Finding(
        "alpha-high", Severity.NOTE, "Alpha is above the band.", "See the verdict: it says whether alpha can be read."
    ),
    Finding(
        "outsized-entries",
        Severity.NOTE,
        "A few weights are far larger than the rest of the matrix, but they do not change the reading of its spectrum.",
        "Usually harmless (e.g. BERT-style outlier dimensions); check the listed entries if they are not expected.",
    ),
    Finding(
        "dead-channels",
        Severity.NOTE,
        "Some input or output channels are exactly zero: dead units, judged apart from the rank of the rest.",
        "Usually harmless (pruned or never-activated units); check them if the layer should use every channel.",
    ),
    Finding(
        "trap-without-impact",
        Severity.NOTE,
        "A few outsized weights stand out, but alpha reads the same without them.",
        "Usually harmless (e.g. BERT-style outlier dimensions); check the listed entries if they are not expected.",
    ),
    Finding(
        "dragon-kings",
        Severity.NOTE,
        "A few eigenvalues lie far beyond the fitted tail: strong, isolated directions.",
        "Usually harmless; alpha without them is in the reason.",
    ),
)

#: The flags that take a layer's reading of alpha away (verdict `NO_READING` unless a
#: verdict of higher precedence applies), and those that only make it approximate.
NO_READING_FLAGS = ("tiny-tail", "unstable-alpha", "bulk-edge-tail", "shuffled-tail", "fit-failed")
APPROXIMATE_FLAGS = ("small-tail", "ks-reject", "lognormal-better", "exponential-better")

BY_NAME: dict[str, Finding] = {finding.name: finding for finding in FINDINGS}

#: Names of older reports that were renamed since (old → new); `finding` reads both.
RENAMED = {"untrusted-fit": "no-reading"}


def finding(name: str) -> Finding | None:
    """The record of a verdict or flag (old names through `RENAMED`), or None if unknown."""
    return BY_NAME.get(RENAMED.get(name, name))


def current_name(name: str) -> str:
    """A verdict or flag name as this version spells it (old reports' names renamed)."""
    return RENAMED.get(name, name)


def severity(name: str | None) -> Severity | None:
    """The severity of a verdict or flag; None for no name or a name this version does not know."""
    record = finding(name) if name else None
    return record.severity if record is not None else None


def style(name: str | None) -> str:
    """The terminal style of a verdict or flag (dim for an unknown one)."""
    record = finding(name) if name else None
    return record.style if record is not None else SEVERITY_STYLES[Severity.NOTE]


def css_class(name: str | None) -> str:
    """The HTML class of a verdict or flag: ``sev-`` and its severity (`render.html`
    colours the four classes as the terminal colours `SEVERITY_STYLES`)."""
    found = severity(name)
    return f"sev-{(found if found is not None else Severity.NOTE).label}"


def marker(name: str | None) -> str:
    """The plot marker of a verdict (``NO_VERDICT_MARKER`` for none or an unknown one)."""
    record = finding(name) if name else None
    return record.marker if record is not None and record.marker else NO_VERDICT_MARKER


#: Marker of a layer without a (known) verdict: a plus, unlike every verdict's.
NO_VERDICT_MARKER = "P"


def look_at_order(name: str) -> tuple[int, int]:
    """Sort key of verdicts for "what to look at": most severe first, then by precedence."""
    found = severity(name)
    return (-(found if found is not None else Severity.NOTE), precedence(name))


def precedence(name: str) -> int:
    """Position of a verdict in `VERDICTS` (lower wins); flags and unknown names come last."""
    name = current_name(name)
    return VERDICTS.index(name) if name in VERDICTS else len(VERDICTS)


def advice(verdict: str | None) -> str:
    """What a layer's verdict means and what to do (`Finding.text`); empty for a healthy
    layer, no verdict, or a verdict this version does not know."""
    record = finding(verdict) if verdict else None
    return record.text if record is not None and record.severity > Severity.OK else ""


def untrained(name: str | None) -> bool:
    """Whether a verdict says the layer has not (yet) learned."""
    record = finding(name) if name else None
    return record is not None and record.untrained
