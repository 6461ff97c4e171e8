"""What the transformers callback costs the training loop: step time with and without it.

    python benchmarks/bench_callback.py            # a small Llama (d=256, 4 blocks), 300 steps, N=50
    python benchmarks/bench_callback.py --quick    # seconds: the tiny test model (CI smoke test)

The real `transformers.Trainer` trains the same model from the same seed with no callback
and with `WeightscopeCallback` at the default N (``every``), the checkpoints' background
analysis off (no checkpoint is saved: what is measured is the training thread's share).
Runs alternate (without, with, without, …) so a shared machine's drift hits both alike;
the table gives the median seconds per step of each and their ratio. The cost of one
measurement alone (`LiveMeasures.measure`, median of 10 warm calls) divided by N and by
the step time is the overhead too, read without the noise of two whole runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def small_config(quick: bool):
    from transformers import LlamaConfig

    if quick:
        return LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
    return LlamaConfig(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )


def train(config, steps: int, length: int, callback, workdir: Path) -> float:
    """Seconds per optimiser step of one run (the Trainer's own train_runtime)."""
    import torch
    from transformers import (
        LlamaForCausalLM,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    rows = torch.randint(0, config.vocab_size, (steps * 8, length), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in rows]
    args = TrainingArguments(
        output_dir=str(workdir),
        max_steps=steps,
        per_device_train_batch_size=8,
        save_strategy="no",
        logging_steps=steps,
        report_to=[],
        use_cpu=True,
        learning_rate=1e-4,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=LlamaForCausalLM(config), args=args, train_dataset=data, callbacks=[callback] if callback else []
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm prints every log instead
    if callback is not None:
        callback.attach(trainer)
    result = trainer.train()
    return result.metrics["train_runtime"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--every", type=int, default=None, help="N (default: the callback's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    parser.add_argument("--workdir", type=Path, default=Path(".bench/callback"))
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import LlamaForCausalLM

    from weightscope.commands.live import LiveMeasures
    from weightscope.integrations._monitor import DEFAULT_EVERY
    from weightscope.integrations.transformers import WeightscopeCallback

    transformers.logging.set_verbosity_error()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    every = args.every or (5 if args.quick else DEFAULT_EVERY)
    steps = args.steps or (20 if args.quick else 300)
    length = 16 if args.quick else 128
    config = small_config(args.quick)
    args.workdir.mkdir(parents=True, exist_ok=True)

    plain, monitored = [], []
    for _ in range(args.repeats):
        plain.append(train(config, steps, length, None, args.workdir))
        monitored.append(
            train(config, steps, length, WeightscopeCallback(every=every, analyse_checkpoints=False), args.workdir)
        )
    model = LlamaForCausalLM(config)
    live = LiveMeasures(model)
    live.measure(0)  # the first call iterates longer (a cold power iteration)
    measures = []
    for step in range(1, 11):
        began = time.perf_counter()
        live.measure(step)
        measures.append(time.perf_counter() - began)

    step_plain, step_monitored = statistics.median(plain), statistics.median(monitored)
    one = statistics.median(measures)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: Llama-shaped, d={config.hidden_size}, {config.num_hidden_layers} blocks, {params / 1e6:.1f} M parameters; "
        f"batch 8 × {length} tokens; {steps} steps; N={every}; torch threads {args.threads}; {args.repeats} runs each"
    )
    print(f"seconds per step without the callback  {step_plain:.4f}  (runs: {', '.join(f'{t:.4f}' for t in plain)})")
    print(
        f"seconds per step with the callback     {step_monitored:.4f}  (runs: {', '.join(f'{t:.4f}' for t in monitored)})"
    )
    print(f"ratio with / without                   {step_monitored / step_plain:.3f}")
    print(
        f"one measurement                        {one * 1000:.1f} ms (median of {len(measures)}); "
        f"per step at N={every}: {one / every / step_plain:.2%} of a step"
    )


if __name__ == "__main__":
    main()
