"""``anges.Meter``, ``anges.policies`` and ``anges.replay``: the native library from Python."""

from __future__ import annotations

import json
import time

import pytest

import anges
from anges import policies


def burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x = (x * 31 + 7) % 1_000_003


def test_meter_registers_with_the_user_daemon(daemon):
    with anges.Meter(socket=str(daemon.socket)) as m:
        assert m.source == "daemon" and m.daemon_job is not None
        assert m.describe.startswith("daemon ") and str(daemon.socket) in m.describe
        assert m.measured, "the powercap fixture is a hardware counter"
        burn(0.3)
        first = m.read()
        burn(0.3)
        second = m.read(fresh=True)
        assert second["source"] == "daemon" and second["measured"]
        assert 0 < first["energy_j"] < second["energy_j"]
        assert second["co2_g"] == pytest.approx(second["energy_j"] / 3.6e6 * 100, rel=1e-6)
        latest = m.read(fresh=False)
        assert latest["source"] == "daemon" and latest["readings"] == 3
        assert latest["energy_j"] >= second["energy_j"], "the daemon's latest publication"
        assert m.carbon["g_per_kwh"] == 100 and m.carbon["source"] == "daemon"
    final = m.final
    assert final["daemon_job_joules"] > 0
    assert final["energy_j"] == pytest.approx(final["daemon_job_joules"], rel=1e-9)
    assert m.close() == final, "closing twice returns the same figures"


def test_without_a_daemon_the_in_process_engine_is_used_and_labelled(no_daemon):
    with anges.Meter(estimated=True, intensity=200.0) as m:
        assert m.source == "local" and m.daemon_job is None
        assert m.describe.startswith("local (estimated")
        burn(0.3)
        r = m.read()
        assert r["source"] == "local" and not r["measured"]
        assert r["energy_j"] > 0 and r["co2_g"] > 0
        assert set(r["domains"]) == {"cpu", "memory", "gpu"}
    with pytest.raises(anges.AngesError, match="no meter daemon answered"):
        anges.Meter("daemon")


def test_errors_are_python_exceptions_with_the_rust_message():
    with pytest.raises(anges.AngesError, match="--pue"):
        anges.Meter("local", pue=0.5)
    with pytest.raises(anges.AngesError, match="XX"):
        anges.Meter("local", region="XX")
    with pytest.raises(anges.AngesError, match="unknown option \"betta\""):
        policies.anges(betta=0.1)
    with pytest.raises(anges.AngesError, match="alpha"):
        policies.anges(alpha=3.0)
    with pytest.raises(anges.AngesError, match="--patience"):
        policies.patience(0)
    with pytest.raises(anges.AngesError, match="epochs.jsonl"):
        anges.replay("/nonexistent/run")


def test_policies_are_the_trainers_state_machines():
    assert policies.DEFAULT_VARIANT == "plateau"
    assert set(policies.VARIANTS) == {"literal", "history", "smoothed", "consecutive",
                                      "plateau", "window"}
    assert policies.VARIANTS["literal"]["alpha"] == 0.9
    # Patience: two epochs without improvement.
    p = policies.patience(2)
    verdicts = [p.observe(v, float(i)) for i, v in enumerate([0.70, 0.72, 0.71, 0.715], 1)]
    assert [v["stop"] for v in verdicts] == [None, None, None, "patience"]
    assert verdicts[-1]["best_epoch"] == 2
    # The literal AN-GES: W = 3, the first dip after the warm-up stops.
    a = policies.anges("literal", warmup=3)
    assert a.label == "anges(α=0.9 β=0.2 W=3)"
    steps = [a.observe(v, e) for v, e in [(0.6, 1.0), (0.65, 2.0), (0.7, 3.0), (0.72, 4.0),
                                           (0.69, 5.0)]]
    assert [s["anges"]["decision"] for s in steps] == [
        "reference", "warm-up", "continue", "continue", "stop"]
    assert steps[-1]["stop"] == "anges"
    q = steps[2]["anges"]
    assert q["delta_perf_pct"] == pytest.approx(100 * (0.7 - 0.65) / 0.65)
    assert q["delta_emiss_pct"] == pytest.approx(100 * (3.0 - 2.0) / 2.0)
    assert q["aer"] == pytest.approx(q["delta_perf_pct"] / q["delta_emiss_pct"])
    # Lower is better: a rising error is a dip.
    low = policies.anges("literal", warmup=2, higher_is_better=False)
    out = [low.observe(v, e) for v, e in [(1.0, 1.0), (0.9, 2.0), (0.8, 3.0), (0.85, 4.0)]]
    assert out[-1]["stop"] == "anges"


def test_a_session_replays_to_the_same_epoch(tmp_path, no_daemon):
    run = tmp_path / "run"
    s = anges.Session(run, "roc-auc", estimated=True, variant="literal", warmup=2)
    assert s.describe.startswith("local")
    stop = None
    for v in [0.60, 0.65, 0.70, 0.72, 0.69, 0.75]:
        burn(0.1)
        out = s.epoch(v, train_loss=0.5)
        if out["stop"]:
            stop = out["epoch"]
            break
    assert stop == 5
    summary = s.finish()
    assert summary["stop_reason"] == "anges" and summary["epochs_run"] == 5
    assert summary["energy_j"] > 0 and summary["meter"].startswith("local")
    replayed = anges.replay(run, variant="literal", warmup=2)
    assert replayed["outcomes"][0]["stop_epoch"] == 5
    grid = anges.replay(run, variant="literal", warmup=[2, 3], beta=[0.2, 0.5])
    assert len(grid["outcomes"]) == 4 and "%ΔEmiss" in grid["table"]
    lines = (run / "epochs.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["meter_source"] == "local"
    with pytest.raises(anges.AngesError, match="overwrite=True"):
        anges.Session(run, "roc-auc", estimated=True)


def test_the_native_module_links_neither_libtorch_nor_libpython():
    """One abi3 wheel beside any torch: the extension needs no libtorch, and takes CPython's
    symbols from the interpreter that loads it."""
    import subprocess

    from anges import _anges

    needed = subprocess.run(["ldd", _anges.__file__], capture_output=True, text=True).stdout
    assert "libc.so" in needed, needed
    assert "libtorch" not in needed and "libpython" not in needed, needed
    assert _anges.__file__.endswith(".abi3.so"), _anges.__file__
