"""The acceptance of issue 32: a real Lightning model and a real Hugging Face ``Trainer``,
trained on BACE under a user-mode ``anges-meterd``, stopped by AN-GES; the job's energy is the
daemon's; ``anges-train replay`` of the written log stops at the same epoch."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import replay_cli, roc_auc, summarize_cli

MAX_EPOCHS = 30
# The literal AN-GES with a short warm-up: it stops at the first validation dip after epoch 3.
POLICY = dict(variant="literal", warmup=3)
CLI_POLICY = ("--stop", "anges", "--anges-variant", "literal", "--warmup", "3")


def mlp(features: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(features, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
    )


def check_run(run_dir, summary, stopped_epoch, daemon_socket):
    """The run's figures are the daemon's, its files are complete, and the CLI's replay of its
    log stops where it stopped."""
    assert summary["stop_reason"] == "anges", summary
    assert 3 < stopped_epoch < MAX_EPOCHS, stopped_epoch
    assert summary["epochs_run"] == stopped_epoch
    assert summary["meter"].startswith(f"daemon {daemon_socket}"), summary["meter"]
    assert summary["meter_gap_epochs"] == 0
    assert summary["energy_j"] > 0 and summary["co2_g"] > 0
    assert summary["energy_j"] == pytest.approx(summary["daemon_job_joules"], rel=1e-9)
    assert summary["co2_g"] == pytest.approx(summary["daemon_job_grams"], rel=1e-9)
    epochs = [json.loads(l) for l in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert len(epochs) == stopped_epoch
    assert all(e["meter_source"] == "daemon" and e["measured"] for e in epochs)
    assert epochs[-1]["anges"]["decision"] == "stop"
    cumulative = [e["cumulative_j"] for e in epochs]
    assert all(a < b for a, b in zip(cumulative, cumulative[1:])), cumulative
    [outcome] = replay_cli(run_dir, *CLI_POLICY)
    assert outcome["stop_epoch"] == stopped_epoch and outcome["fired"], outcome
    with open(run_dir / "emissions.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["project_name"] == "anges"
    assert float(row["energy_consumed"]) * 3.6e6 == pytest.approx(summary["energy_j"], rel=1e-6)


def fit_lightning(bace, run_dir, **options):
    """A small MLP fitted with Lightning on BACE under ``AngesEarlyStopping(**options)``;
    returns the callback and the trainer."""
    import lightning as L

    from anges.lightning import AngesEarlyStopping

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(bace["train"][0].shape[1])

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.binary_cross_entropy_with_logits(
                self.net(x).squeeze(1), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_roc_auc", roc_auc(self.net(x).squeeze(1), y))
            xt, yt = bace["test"]
            self.log("test_roc_auc", roc_auc(self.net(xt).squeeze(1), yt))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    def loader(part, shuffle):
        x, y = bace[part]
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=len(x) if part != "train" else 64,
            shuffle=shuffle, generator=torch.Generator().manual_seed(0))

    # The five lines of the README.
    stop = AngesEarlyStopping(monitor="val_roc_auc", mode="max", run_dir=str(run_dir),
                              **POLICY, **options)
    trainer = L.Trainer(max_epochs=MAX_EPOCHS, callbacks=[stop], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Model(), loader("train", True), loader("valid", False))
    return stop, trainer


def test_lightning_stops_through_anges_early_stopping(tmp_path, daemon, bace):
    run_dir = tmp_path / "lightning-run"
    stop, trainer = fit_lightning(bace, run_dir, socket=str(daemon.socket),
                                  test_monitor="test_roc_auc", dataset="bace", init="random")
    assert trainer.current_epoch == stop.stopped_epoch, "the trainer stopped after that epoch"
    check_run(run_dir, stop.summary, stop.stopped_epoch, daemon.socket)
    epochs = [json.loads(l) for l in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert all(e["train_loss"] > 0 for e in epochs), "the epoch's mean training loss"
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"], "it learned"
    # summarize groups the run under its labels (the model's: its class name) with its test
    # value at the best-validation epoch.
    summary = stop.summary
    assert (summary["dataset"], summary["model"], summary["init"]) == ("bace", "Model", "random")
    best = epochs[summary["best_epoch"] - 1]
    assert summary["best_test"]["roc_auc"] == best["test"]["roc_auc"] > 0.5
    [group] = summarize_cli(run_dir)
    assert (group["dataset"], group["model"], group["init"], group["policy"]) == (
        "bace", "Model", "random", "anges")
    assert group["runs"] == 1 and group["epochs_mean"] == stop.stopped_epoch
    assert group["best_test_mean"] == pytest.approx(best["test"]["roc_auc"], rel=1e-12)
    assert group["final_test_mean"] == pytest.approx(epochs[-1]["test"]["roc_auc"], rel=1e-12)
    assert group["energy_j_mean"] == pytest.approx(summary["energy_j"], rel=1e-9)


def test_hugging_face_trainer_stops_through_anges_callback(tmp_path, daemon, bace):
    from transformers import Trainer, TrainingArguments

    from anges.hf import AngesCallback

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(bace["train"][0].shape[1])

        def forward(self, x, labels=None):
            logits = self.net(x).squeeze(1)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            return out

    class Rows(torch.utils.data.Dataset):
        def __init__(self, part):
            self.x, self.y = bace[part]

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    def metrics(pred):
        return {"roc_auc": roc_auc(torch.tensor(pred.predictions), torch.tensor(pred.label_ids))}

    run_dir = tmp_path / "hf-run"
    callback = AngesCallback(monitor="eval_roc_auc", mode="max", run_dir=str(run_dir),
                             socket=str(daemon.socket), **POLICY)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf-out"), num_train_epochs=MAX_EPOCHS,
        per_device_train_batch_size=64, per_device_eval_batch_size=256, learning_rate=0.01,
        eval_strategy="epoch", save_strategy="no", logging_strategy="epoch", report_to=[],
        use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = Trainer(model=Model(), args=args, train_dataset=Rows("train"),
                      eval_dataset=Rows("valid"), compute_metrics=metrics, callbacks=[callback])
    trainer.train()
    assert round(trainer.state.epoch) == callback.stopped_epoch
    check_run(run_dir, callback.summary, callback.stopped_epoch, daemon.socket)
    assert any("anges/aer" in h for h in trainer.state.log_history)


def test_lightning_without_a_daemon_uses_the_labelled_in_process_engine(
        tmp_path, no_daemon, bace):
    from anges.lightning import AngesEarlyStopping

    with pytest.raises(ValueError, match="metric="):
        AngesEarlyStopping(monitor="val_accuracy", mode="max")
    with pytest.raises(ValueError, match="contradicts"):
        AngesEarlyStopping(monitor="val_rmse", mode="max")
    run_dir = tmp_path / "local-run"
    stop, _ = fit_lightning(bace, run_dir, estimated=True)
    summary = stop.summary
    assert summary["meter"].startswith("local (estimated"), summary["meter"]
    assert summary["daemon_job"] is None and summary["daemon_job_joules"] is None
    assert summary["measured"] is False
    assert summary["energy_j"] > 0 and summary["stop_reason"] == "anges"
    epochs = [json.loads(l) for l in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert {e["meter_source"] for e in epochs} == {"local"}
    [outcome] = replay_cli(run_dir, *CLI_POLICY)
    assert outcome["stop_epoch"] == stop.stopped_epoch
