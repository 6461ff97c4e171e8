"""Regenerate the README's pictures from the example training run.

    python scripts/make_readme_figures.py            # writes docs/img/esd_example.png, docs/img/trend_example.png

The ESD picture is a healthy layer with a trusted fit — the picture a reader should
learn first (the run's last checkpoint is over-fit on purpose, see the README) — and the
script fails if the chosen layer stops being one; the trend picture is the whole run. Both go through the same API as `weightscope plot` and `weightscope trend
--plot`, so the README shows exactly what users get. The script fails if a picture grows
past `MAX_BYTES` (the PNGs are committed; the repository should stay small).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weightscope.analysis.layer import select
from weightscope.analysis.pipeline import stream_layers
from weightscope.checkpoint import open_checkpoint
from weightscope.commands.trend import trend
from weightscope.errors import WeightscopeError
from weightscope.options import AnalysisOptions
from weightscope.render.plot_esd import layer_figure
from weightscope.render.plot_trend import trend_figure
from weightscope.render.plots import require_matplotlib, save_png

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 300 * 1024


def _esd_picture(checkpoint: Path, layer: str, target: Path) -> Path:
    """The ESD figure of ``layer``, which must be healthy with a trusted fit."""
    options = AnalysisOptions(include=(layer,), randomize=True)
    with open_checkpoint(checkpoint) as reader:
        items = list(stream_layers(reader, select(reader, options), options))
    if len(items) != 1 or items[0].evals is None:
        raise WeightscopeError(
            f"--layer {layer!r} must match exactly one analysable layer of {checkpoint}, matched {len(items)}"
        )
    item = items[0]
    trust = item.result.fit_trust
    if item.result.verdict != "healthy" or trust is None or not trust.trusted:
        raise WeightscopeError(
            f"{item.result.name} of {checkpoint} is {item.result.verdict}, not a healthy trusted layer"
        )
    return save_png(layer_figure(item), target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "examples/runs/tiny-lm", help="the training run directory")
    parser.add_argument("--step", type=int, default=200, help="the checkpoint of the ESD picture")
    parser.add_argument("--layer", default=r"^model\.layers\.1\.mlp\.up_proj\.weight$", help="regex of the ESD layer")
    parser.add_argument("--out", type=Path, default=REPO / "docs/img", help="where the PNGs go")
    args = parser.parse_args(argv)
    try:
        require_matplotlib()
        args.out.mkdir(parents=True, exist_ok=True)
        # The step directories only: final.pt beside them repeats the last step as a pickle.
        checkpoints = sorted(args.run.glob("step-*/model.safetensors"))
        if not checkpoints:
            raise WeightscopeError(f"no step-*/model.safetensors under {args.run}")
        run = trend(checkpoints)
        written = [
            _esd_picture(
                args.run / f"step-{args.step}" / "model.safetensors", args.layer, args.out / "esd_example.png"
            ),
            save_png(trend_figure(run), args.out / "trend_example.png"),
        ]
    except WeightscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        size = path.stat().st_size
        print(f"wrote {path} ({size / 1024:.0f} KB)")
        if size > MAX_BYTES:
            print(f"error: {path} is over {MAX_BYTES // 1024} KB", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
