"""The trainer callbacks, with the real transformers and Lightning trainers on a tiny
Llama-shaped model (CPU, one thread): metrics reach the trainers' loggers, each saved
checkpoint is analysed in the background, a planted growth of one block's query weights
raises ``logit-growth`` naming that block (and stops training with ``stop_on``), and a
steady run raises nothing."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.monitor_runs import PLANTED_BLOCK, plant, tiny_llama, token_batches
from weightscope.commands.live import LiveMeasures
from weightscope.errors import WeightscopeError
from weightscope.integrations._monitor import TREND_REPORT, TrainingAlert
from weightscope.stats.attention import head_bounds

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
lightning = pytest.importorskip("lightning")

STEPS, SAVE_EVERY, MEASURE_EVERY = 50, 10, 5


@pytest.fixture(autouse=True)
def one_thread():
    """A tiny model trains fastest on one thread (many threads only contend)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the live measures --------------------------------------------------------------------


def test_live_measures_match_the_references():
    model = tiny_llama()
    live = LiveMeasures(model)
    live.measure(0)
    metrics = live.measure(1)  # the power iteration warm-started once
    attention = model.model.layers[2].self_attn
    wq, wk = (p.detach().double().numpy() for p in (attention.q_proj.weight, attention.k_proj.weight))
    gain = model.model.layers[2].input_layernorm.weight.detach().double().numpy()
    expected = head_bounds(wq, wk, 4, 2, 16, gain)[0].max()
    assert metrics["weightscope/logit_bound/block_2"] == pytest.approx(expected, rel=1e-9)
    block = [p.detach().numpy() for p in model.model.layers[3].parameters() if p.ndim == 2]
    assert metrics["weightscope/spectral_norm/block_3"] == pytest.approx(
        max(np.linalg.norm(w, 2) for w in block), rel=1e-3
    )
    rows = model.model.embed_tokens.weight.detach().double().numpy()
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosines = unit @ unit.T
    n = len(rows)
    assert metrics["weightscope/embedding/mean_cosine"] == pytest.approx((cosines.sum() - n) / (n * (n - 1)), abs=1e-6)
    centred = rows - rows.mean(axis=0)
    variances = np.linalg.eigvalsh(centred.T @ centred / n)
    assert metrics["weightscope/embedding/pc1_share"] == pytest.approx(variances[-1] / variances.sum(), rel=1e-5)


def test_live_measures_per_matrix_and_bad_input():
    model = tiny_llama()
    metrics = LiveMeasures(model, spectral_norms=r"layers\.0\.self_attn\.[qk]_proj").measure(0)
    chosen = sorted(k for k in metrics if k.startswith("weightscope/spectral_norm/model."))
    assert chosen == [
        "weightscope/spectral_norm/model.layers.0.self_attn.k_proj.weight",
        "weightscope/spectral_norm/model.layers.0.self_attn.q_proj.weight",
    ]
    with pytest.raises(WeightscopeError, match="regular expression"):
        LiveMeasures(model, spectral_norms="(")


# --- transformers ---------------------------------------------------------------------------


class _Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.rows = token_batches(STEPS * 8)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.rows[index], "labels": self.rows[index]}


class _PlantOnSave(transformers.TrainerCallback):
    def on_save(self, args, state, control, model=None, **kwargs):
        plant(model)


def train_transformers(run: Path, callback, *, planted: bool, report_to: list[str] | None = None):
    from weightscope.integrations.transformers import WeightscopeCallback

    assert isinstance(callback, WeightscopeCallback)
    args = transformers.TrainingArguments(
        output_dir=str(run),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        save_steps=SAVE_EVERY,
        logging_steps=SAVE_EVERY,
        report_to=report_to or [],
        use_cpu=True,
        learning_rate=1e-4,
        disable_tqdm=True,
        save_only_model=True,
        seed=0,
    )
    extra = [_PlantOnSave()] if planted else []
    trainer = transformers.Trainer(model=tiny_llama(), args=args, train_dataset=_Tokens(), callbacks=[callback, *extra])
    callback.attach(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrainingAlert)
        trainer.train()
    return trainer, [w for w in caught if issubclass(w.category, TrainingAlert)]


def _callback(module, tmp_path: Path, **kwargs):
    return module.WeightscopeCallback(every=MEASURE_EVERY, analysis=["--cache-dir", str(tmp_path / "cache")], **kwargs)


def test_transformers_steady_run(tmp_path):
    from weightscope.integrations import transformers as integration

    callback = _callback(integration, tmp_path)
    trainer, alerts = train_transformers(tmp_path / "run", callback, planted=False, report_to=["tensorboard"])
    assert alerts == [] and callback.monitor.alerts == []
    measured = [entry for entry in trainer.state.log_history if "weightscope/logit_bound/max" in entry]
    assert [entry["step"] for entry in measured] == list(range(MEASURE_EVERY, STEPS + 1, MEASURE_EVERY))
    # every saved checkpoint analysed, and the run's trend report written beside them
    assert sorted(e.step for e in callback.monitor.events) == list(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY))
    assert any("weightscope/checkpoint/logit_bound_max" in entry for entry in trainer.state.log_history)
    assert (tmp_path / "run" / TREND_REPORT).is_file()
    # the run's own TensorBoard logger received them
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((tmp_path / "run").rglob("events.out.tfevents*"))
    assert files
    scalars = EventAccumulator(str(files[0].parent))
    scalars.Reload()
    assert "train/weightscope/logit_bound/block_1" in scalars.Tags()["scalars"]  # transformers adds "train/"


def test_transformers_planted_growth_stops_the_run(tmp_path):
    from weightscope.integrations import transformers as integration

    callback = _callback(integration, tmp_path, stop_on=["logit-growth"], analyse_checkpoints=False)
    trainer, alerts = train_transformers(tmp_path / "run", callback, planted=True)
    assert trainer.state.global_step < STEPS  # stopped early, by the live measures
    growth = [a for a in callback.monitor.alerts if a.flag == "logit-growth"]
    assert [a.subject for a in growth] == [f"block {PLANTED_BLOCK}"]
    assert any("logit-growth: block 1" in str(w.message) for w in alerts)
    assert [
        e["weightscope/alert/logit-growth"] for e in trainer.state.log_history if "weightscope/alert/logit-growth" in e
    ] == [1.0]


# --- Lightning ------------------------------------------------------------------------------


class _Module(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_llama()

    def training_step(self, batch, index):
        return self.model(input_ids=batch, labels=batch).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


class _PlantOnCheckpoint(lightning.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        plant(pl_module)


def train_lightning(root: Path, callback, *, planted: bool):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    saver = ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=SAVE_EVERY, save_top_k=-1)
    extra = [_PlantOnCheckpoint()] if planted else []
    trainer = lightning.Trainer(
        max_steps=STEPS,
        callbacks=[callback, saver, *extra],
        accelerator="cpu",
        logger=CSVLogger(root, name="logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    data = torch.utils.data.DataLoader(token_batches(STEPS * 8), batch_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrainingAlert)
        trainer.fit(_Module(), data)
    return trainer, [w for w in caught if issubclass(w.category, TrainingAlert)]


@pytest.mark.slow  # ~30 s here: each background analysis imports torch to read the .ckpt pickles
def test_lightning_steady_run(tmp_path):
    from weightscope.integrations import lightning as integration

    callback = _callback(integration, tmp_path)
    _, alerts = train_lightning(tmp_path, callback, planted=False)
    assert alerts == [] and callback.monitor.alerts == []
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    measured = [row for row in rows if row.get("weightscope/logit_bound/max")]
    assert [int(row["step"]) for row in measured] == list(range(MEASURE_EVERY, STEPS + 1, MEASURE_EVERY))
    assert any(row.get("weightscope/checkpoint/logit_bound_max") for row in rows)
    assert sorted(e.step for e in callback.monitor.events) == list(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY))
    assert (tmp_path / "checkpoints" / TREND_REPORT).is_file()


def test_lightning_planted_growth_stops_the_run(tmp_path):
    from weightscope.integrations import lightning as integration

    callback = _callback(integration, tmp_path, stop_on=["logit-growth"], analyse_checkpoints=False)
    trainer, alerts = train_lightning(tmp_path, callback, planted=True)
    assert trainer.global_step < STEPS
    growth = [a for a in callback.monitor.alerts if a.flag == "logit-growth"]
    assert [a.subject for a in growth] == [f"block {PLANTED_BLOCK}"]
    assert alerts


def test_stop_on_rejects_unknown_flags():
    from weightscope.integrations.transformers import WeightscopeCallback

    with pytest.raises(WeightscopeError, match="not a flag"):
        WeightscopeCallback(stop_on=["logit-grwoth"])
    with pytest.raises(WeightscopeError, match="every"):
        WeightscopeCallback(every=0)
