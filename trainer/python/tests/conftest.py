"""Fixtures of the Python package's tests: a real user-mode ``anges-meterd`` on a fixture
powercap tree (the Python twin of ``tests/src/lib.rs``'s ``PowercapFixture``, ``PowerFeed`` and
``MeterDaemon``: the same tree, flags and environment), and BACE turned into small numeric
features.

``ANGES_METERD`` and ``ANGES_TRAIN`` name the binaries (``make test`` sets them); ``$ANGES_DATA_DIR``
or ``../shared/datasets/moleculenet`` holds ``bace.csv``.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def binary(env: str, name: str) -> Path:
    path = Path(os.environ.get(env, TARGET / "debug" / name))
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it (cargo build --bins) or set ${env}")
    return path


class Powercap:
    """One powercap package zone whose counter a thread advances at ``watts``."""

    def __init__(self, root: Path, watts: float) -> None:
        self.root = root
        zone = root / "sys/class/powercap/intel-rapl:0"
        zone.mkdir(parents=True)
        (zone / "name").write_text("package-0\n")
        (zone / "max_energy_range_uj").write_text("262143328850\n")
        os.symlink("/proc", root / "proc")
        self.counter = zone / "energy_uj"
        self.uj = 1_000_000
        self._set()
        self._stop = threading.Event()
        self._step = int(watts * 0.02 * 1e6)
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _set(self) -> None:
        # Rewritten in place with one write: the daemon keeps the file open and re-reads it.
        fd = os.open(self.counter, os.O_WRONLY | os.O_CREAT)
        try:
            os.write(fd, f"{self.uj:020}\n".encode())
        finally:
            os.close(fd)

    def _feed(self) -> None:
        while not self._stop.wait(0.02):
            self.uj += self._step
            try:
                self._set()
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Daemon:
    """A real ``anges-meterd --user`` reading the fixture tree, killed at the end."""

    def __init__(self, home: Path, sysfs: Path) -> None:
        run = home / "run"
        run.mkdir(parents=True)
        env = dict(os.environ)
        env.pop("ANGES_METER_SOCKET", None)
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_STATE_HOME=str(home / "state"),
            XDG_RUNTIME_DIR=str(run),
            ANGES_LOG="warn",
        )
        self.proc = subprocess.Popen(
            [
                str(binary("ANGES_METERD", "anges-meterd")),
                "--user", "--no-dbus", "--sensor", "powercap", "--gpus", "none",
                "--rate-hz", "200", "--publish-interval-ms", "20", "--intensity", "100",
                "--sysfs-root", str(sysfs),
            ],
            env=env,
        )
        self.socket = run / "anges/meterd.sock"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"anges-meterd never listened on {self.socket}")
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def daemon(tmp_path: Path):
    """A user-mode daemon on a 5 W fixture; its socket is ``daemon.socket``."""
    feed = Powercap(tmp_path / "sysfs", 5.0)
    d = Daemon(tmp_path / "home", tmp_path / "sysfs")
    yield d
    d.stop()
    feed.stop()


@pytest.fixture
def no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No daemon on any socket the discovery tries: the user socket, and a named one, absent."""
    run = tmp_path / "norun"
    run.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.setenv("ANGES_METER_SOCKET", str(run / "absent.sock"))
    return run


def bace_csv() -> Path:
    for folder in (os.environ.get("ANGES_DATA_DIR"), ROOT.parent / "shared/datasets/moleculenet"):
        if folder and (Path(folder) / "bace.csv").is_file():
            return Path(folder) / "bace.csv"
    pytest.fail("bace.csv not found in $ANGES_DATA_DIR nor ../shared/datasets/moleculenet")


FEATURES = 128


def featurize(smiles: str) -> list:
    """Counts of atoms, bonds and ring marks, and hashed character bigrams, of a SMILES."""
    x = [0.0] * FEATURES
    for i, token in enumerate(("C", "c", "N", "n", "O", "o", "S", "F", "Cl", "Br", "=", "#",
                               "@", "[", "(", "1", "2", "3", "+", "H")):
        x[i] = smiles.count(token) / 10.0
    for a, b in zip(smiles, smiles[1:]):
        x[20 + (ord(a) * 31 + ord(b)) % (FEATURES - 20)] += 0.1
    return x


@pytest.fixture(scope="session")
def bace():
    """BACE as (features, labels) tensors, split 80/10/10 in a fixed shuffled order."""
    import torch

    with open(bace_csv(), newline="") as f:
        rows = [(r["mol"], float(r["Class"])) for r in csv.DictReader(f)]
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(rows), generator=g).tolist()
    x = torch.tensor([featurize(rows[i][0]) for i in order])
    y = torch.tensor([rows[i][1] for i in order])
    n = len(rows)
    a, b = int(0.8 * n), int(0.9 * n)
    return {"train": (x[:a], y[:a]), "valid": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


def roc_auc(scores, labels) -> float:
    """ROC-AUC by the Mann-Whitney U statistic, ties counted half."""
    pairs = sorted(zip(scores.tolist(), labels.tolist()))
    pos = sum(1 for _, l in pairs if l > 0.5)
    neg = len(pairs) - pos
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg = (i + j + 1) / 2.0
        rank_sum += avg * sum(1 for k in range(i, j) if pairs[k][1] > 0.5)
        i = j
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def cli(*args: str) -> str:
    """``anges-train ARGS``' standard output (a failure fails the test with its stderr)."""
    out = subprocess.run([str(binary("ANGES_TRAIN", "anges-train")), *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"anges-train {' '.join(args)}: exit {out.returncode}: {out.stderr}")
    return out.stdout


def replay_cli(run_dir: Path, *flags: str) -> list:
    """``anges-train replay RUN_DIR FLAGS --json``: one outcome per policy."""
    import json

    out = cli("replay", "--json", str(run_dir), *flags)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def summarize_cli(*paths: Path) -> list:
    """``anges-train summarize PATHS --json``: the groups of runs."""
    import json

    return json.loads(cli("summarize", "--json", *map(str, paths)))
