"""A CI gate on a checkpoint's health: `weightscope gate PATH`.

Rules come from ``[tool.weightscope.gate]`` in pyproject.toml (of the current directory,
or a ``--config`` file; read by `weightscope.config.read_tool_section`, the one config
reader) and from command-line flags generated from the rules' fields (`GateRules`),
which override the file. Every rule is checked per layer (or once for the model) and each
check is one `Check`: pass, warn (out of range but within the allowed share), fail,
accepted (a failure the baseline has too), or skip (the report lacks what the rule
needs, e.g. traps without ``--randomize``). A skipped rule fails the gate under
``strict`` (the default), so a gate never passes on checks it did not make; zero layers
left to judge always fails. The CLI maps a failure to exit code 1, and bad input or
config to 2. Every failure carries its one-line fix: the finding's (`weightscope.vocabulary`), or
the rule's own for rules that are not a layer finding.

What the rules judge, and why (measured on all-MiniLM-L6-v2, a well-trained public
model, and on broken copies of it the gate must fail):
- alpha bands read layers whose alpha has a reading only (`LayerResult.has_reading`):
  where alpha carries no information it is not a measurement.
- traps fail by impact (the layer's verdict is correlation-trap: alpha moves or leaves
  the band without the trap entries), not by existence; BERT's outlier dimension is a
  real trap that moves nothing.
- layers that look untrained or reset (`looks-untrained`: a random-like spectrum and
  entries like an initial draw), collapsed ranks and failed analyses fail. A random-like
  spectrum alone is a warning and fails only under ``fail-on-random-like``: trained
  weights can keep an MP-shaped spectrum (SmolLM2-135M's seven value projections, whose
  Q4_1 rounding is 0.7 % of their energy), the learned part in the singular vectors.
- `max_alpha_deviation`: a layer whose alpha lies more than that many robust sigmas
  (1.4826·MAD) from the median alpha of the model's layers of the same kind: an
  outlier against the model itself, which catches one broken layer even when the whole
  band is shifted.
- ``exclude``: layers (regexes) the rules skip, e.g. the pooler sentence-transformers
  never train.
- LoRA updates (a rank-r ΔW has no power-law tail) are judged by the adapter rules
  (`update_checks`): rank used, size against the adapter's median, dominance.

Real models are rarely spotless: the default gate fails all-MiniLM-L6-v2 on its untrained
pooler (looks-untrained; its FAIL line names the exclude that accepts it). Teams gate what a change did, so ``--baseline`` (a saved report or
the checkpoint before the change) runs the same rules on the baseline and accepts the
failures it has too, no worse; ``--write-baseline FILE`` accepts today's state once.

The gate reads a `Report`, so `analyze -o report.json` once and `gate report.json` costs
no recompute.

The modules of this package: `rules` (rules, settings, `Check`, the result), `layers` (the
rules on a report's layers), `adapter` (LoRA updates), `baseline` (new or worse), and
`command`: `evaluate` runs them, `gate` / `accept` are the command. This file imports
nothing, so that the CLI reads `rules` (its flags) without loading numpy and the
pipeline for `gate --help`.
"""
