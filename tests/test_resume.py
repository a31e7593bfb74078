"""A training stage SIGKILLed mid-run and rerun ends exactly where an uninterrupted run ends.

Real subprocesses of ``stages/train.py`` on a tiny repo: one run goes straight through, another
is killed as soon as its first epoch's resumable state lands in ``runtime.state_dir`` and is then
rerun. The final weights must be bit-identical and the per-epoch logs equal byte for byte (they hold
no timings: those go to MLflow and the log).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

from facegen.models.checkpoint import safe_load
from tests.stage_repo import make_repo, run_stage, stage_cmd, stage_env, write_prepared

pytestmark = pytest.mark.slow  # three stage processes (~1 min on the 2-core CI machine)

# Enough steps per epoch (100) that the kill lands inside epoch 2, not after the run finished.
LONG_EPOCHS = {"train": 1600, "val": 32, "test": 16}


def _repo(root):
    make_repo(root, data=False)
    write_prepared(root, LONG_EPOCHS)
    return root


def _start_and_signal_after_first_epoch(root, signum: int, **popen) -> subprocess.Popen:
    """Start ``train@vae`` in ``root``, send ``signum`` once its first epoch's state exists, wait for the end."""
    proc = subprocess.Popen(stage_cmd("train", "--family", "vae"), cwd=root, env=stage_env(root),
                            **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen})
    state_dir = root / ".facegen_state"
    deadline = time.monotonic() + 240
    while not list(state_dir.glob("train-vae-*.pt")):
        assert proc.poll() is None, "training ended before writing its first resumable state"
        assert time.monotonic() < deadline, "no resumable state after 240 s"
        time.sleep(0.02)
    proc.send_signal(signum)
    proc.wait(timeout=120)
    (state,) = state_dir.glob("train-vae-*.pt")
    assert 1 <= safe_load(state)["epoch"] < 3, "stopped too late to test resuming"
    assert not (root / "models" / "vae" / "model.pt").exists()
    return proc


def _start_and_kill_after_first_epoch(root) -> None:
    assert _start_and_signal_after_first_epoch(root, signal.SIGKILL).returncode == -signal.SIGKILL


def test_sigterm_ends_like_ctrl_c_run_killed_and_state_kept(tmp_path):
    """What schedulers, ``docker stop`` and torchrun send: one line, exit 143 (128 + 15, as Ctrl-C gives
    130), the MLflow run KILLED (it stayed RUNNING), the epoch state kept, and the rerun resumes. Run under
    umask 002, the outputs written meanwhile are group-writable like any file the process opens."""
    from mlflow.tracking import MlflowClient

    root = _repo(tmp_path / "repo")
    with open(tmp_path / "stderr.log", "w") as log:  # a file, not a pipe: a full pipe would block the stage
        proc = _start_and_signal_after_first_epoch(root, signal.SIGTERM, stderr=log, preexec_fn=lambda: os.umask(0o002))
    err = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: interrupted (SIGTERM); rerun the stage to continue (training resumes after its last completed epoch)"]
    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("facegen").experiment_id],
                                filter_string="tags.stage = 'train'")
    assert run.info.status == "KILLED"
    (state,) = (root / ".facegen_state").glob("train-vae-*.pt")
    for output in (state, root / "metrics" / "vae_train.csv"):
        assert output.stat().st_mode & 0o777 == 0o664, output
    resumed = run_stage(root, "train", "--family", "vae")
    assert resumed.returncode == 0 and "resuming after epoch" in resumed.stderr, resumed.stderr


def test_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    straight, killed = _repo(tmp_path / "straight"), _repo(tmp_path / "killed")
    # The uninterrupted reference runs concurrently with the run we kill.
    reference = subprocess.Popen(stage_cmd("train", "--family", "vae"), cwd=straight, env=stage_env(straight),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _start_and_kill_after_first_epoch(killed)
    resumed = run_stage(killed, "train", "--family", "vae")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err

    a = safe_load(straight / "models" / "vae" / "model.pt")["state_dict"]
    b = safe_load(killed / "models" / "vae" / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (straight / "metrics" / "vae_train.csv").read_bytes() == (killed / "metrics" / "vae_train.csv").read_bytes()
    log_b = pd.read_csv(killed / "metrics" / "vae_train.csv")
    assert list(log_b["epoch"]) == [1, 2, 3]
    # A finished run leaves no resumable state behind (a later run starts fresh).
    assert not list((killed / ".facegen_state").glob("*.pt"))
