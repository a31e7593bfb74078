"""Bad input, nothing lost: every case in docs/errors.md, through the real stage entry points.

Each case runs a ``stages/*.py`` script in a tiny throw-away repo and checks what a user sees: one
line on stderr that names the problem and the fix, exit code 2, no traceback, and no half-written
output. Scripts run in-process (``runpy``, the same ``__main__`` code path) to keep this file fast;
``test_real_process_*`` checks the same contract on a genuine subprocess.
"""
from __future__ import annotations

import ast
import contextlib
import errno
import os
import runpy
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegen.config import VAEConfig
from facegen.errors import CheckpointError
from facegen.models import build
from facegen.models import checkpoint
from facegen.models.checkpoint import safe_load, save_model
from tests.stage_repo import REPO, make_repo, run_stage

ATTR_NAMES = ("Smiling", "Male")
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port: refused at once


# -- helpers ----------------------------------------------------------------------------------------
def run(root: Path, monkeypatch, capfd, stage: str, *args: str) -> tuple[int, str]:
    """Run ``stages/<stage>.py`` as ``__main__`` in ``root``; return (exit code, stderr)."""
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # stage_main replaces it
    capfd.readouterr()
    code = 0
    try:
        runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capfd.readouterr().err


def error_line(stderr: str) -> str:
    """The single ``error:`` line a failed stage prints, after checking there is nothing else."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_user_error(code: int, stderr: str, *phrases: str) -> str:
    assert code == 2, stderr
    line = error_line(stderr)
    for phrase in phrases:
        assert phrase in line, line
    return line


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def write_celeba(root: Path, n: int = 12, *, images: bool = True, attributes: tuple[str, ...] = ATTR_NAMES) -> Path:
    """A tiny CelebA folder in the official txt layout (what data.source: celeba reads)."""
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    rng = np.random.default_rng(0)
    if images:
        (root / "img_align_celeba").mkdir()
        for name in ids:
            Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(root / "img_align_celeba" / name)
    rows = [f"{name} " + " ".join(rng.choice(["1", "-1"], len(attributes))) for name in ids]
    (root / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(attributes)}\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{name} {i % 3}" for i, name in enumerate(ids)) + "\n")
    return root


def celeba_repo(tmp_path: Path, **data: object) -> Path:
    return make_repo(tmp_path / "repo", {"data": {"source": "celeba", "root": str(tmp_path / "celeba"),
                                                  "workers": 1, **data}}, data=False)


def trained_vae(root: Path) -> Path:
    """A valid models/vae/model.pt (untrained weights suffice: the checkpoint carries its config)."""
    path = root / "models" / "vae" / "model.pt"
    save_model(build("vae", VAEConfig(latent_dim=4, widths=(8, 16)), 16), path)
    return path


@contextlib.contextmanager
def read_only(directory: Path):
    """Make ``directory`` refuse new files, also for root (immutable flag), or skip the test."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # root ignores permission bits, not the immutable flag
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(directory)],
                                                        capture_output=True).returncode:
            pytest.skip("running as root without a working chattr: cannot make a folder unwritable")
        undo = ["chattr", "-i", str(directory)]
    else:
        directory.chmod(0o555)
        undo = ["chmod", "755", str(directory)]
    try:
        yield directory
    finally:
        subprocess.run(undo, check=True)


# -- data -------------------------------------------------------------------------------------------
def test_missing_dataset_folder(tmp_path, monkeypatch, capfd):
    root = celeba_repo(tmp_path)
    code, err = run(root, monkeypatch, capfd, "prepare")
    assert_user_error(code, err, "celeba does not exist", "download CelebA", "data.root")
    assert not (root / "data" / "prepared").exists()


def test_partial_celeba_attributes_without_images(tmp_path, monkeypatch, capfd):
    write_celeba(tmp_path / "celeba", images=False)
    root = celeba_repo(tmp_path)
    code, err = run(root, monkeypatch, capfd, "prepare")
    assert_user_error(code, err, "partial CelebA txt layout: missing", "img_align_celeba", "unpack it there")
    assert not (root / "data" / "prepared").exists()


def test_images_missing_from_a_partial_extraction(tmp_path, monkeypatch, capfd):
    celeba = write_celeba(tmp_path / "celeba")
    (celeba / "img_align_celeba" / "000005.jpg").unlink()
    root = celeba_repo(tmp_path)
    code, err = run(root, monkeypatch, capfd, "prepare")
    assert_user_error(code, err, "is partial: 1 of 12 listed images are missing", "000005.jpg", "extract the whole")
    assert not (root / "data" / "prepared").exists()


def test_corrupt_jpeg(tmp_path, monkeypatch, capfd):
    celeba = write_celeba(tmp_path / "celeba")
    jpeg = celeba / "img_align_celeba" / "000002.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:40])  # truncated mid-header
    root = celeba_repo(tmp_path, max_corrupt_fraction=0.0)
    code, err = run(root, monkeypatch, capfd, "prepare")
    assert_user_error(code, err, "unreadable (e.g. 000002.jpg)", "re-extract the archive",
                      "data.max_corrupt_fraction")
    assert files_under(root / "data") == []  # not even the temp folder prepare built in


def test_attribute_not_in_the_file(tmp_path, monkeypatch, capfd):
    write_celeba(tmp_path / "celeba", attributes=("Smiling",))
    root = celeba_repo(tmp_path, attributes=["Smiling", "Eyeglasses"])
    code, err = run(root, monkeypatch, capfd, "prepare")
    assert_user_error(code, err, "['Eyeglasses'] are not in", "list_attr_celeba.txt", "available: Smiling")


def test_prepared_data_missing(tmp_path, monkeypatch, capfd):
    root = make_repo(tmp_path, data=False)
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert_user_error(code, err, "data/prepared/train.npy", "run `dvc repro prepare` first")
    assert files_under(root / "models") == []


# -- params -----------------------------------------------------------------------------------------
PARAM_CASES = {
    "unknown key": ({"models": {"vae": {"lattent_dim": 8}}}, ["unknown key models.vae.lattent_dim", "allowed:"]),
    "wrong type": ({"models": {"vae": {"train": {"epochs": "three"}}}},
                   ["models.vae.train.epochs must be an integer", "'three'"]),
    "negative lr": ({"models": {"vae": {"train": {"lr": -0.001}}}}, ["models.vae.train.lr must be > 0"]),
    "negative beta": ({"models": {"vae": {"beta": -1.0}}}, ["models.vae.beta must be >= 0"]),
    "image size not a power of 2": ({"data": {"image_size": 48}}, ["data.image_size must be a power of 2"]),
    "unknown attribute name": ({"data": {"attributes": ["Smilling"]}}, ["not CelebA attribute names", "Smiling"]),
    "bad categorical group": ({"evaluate": {"edit_exclusive_groups": [["Blond_Hair", "Blond_Hiar"]]}},
                              ["evaluate.edit_exclusive_groups has ['Blond_Hiar'], not CelebA attribute names"]),
    "CUDA graphs on the CPU": ({"runtime": {"compile": True, "compile_mode": "reduce-overhead"}},
                               ["runtime.compile_mode reduce-overhead replays CUDA graphs", "compile_mode: default"]),
}


@pytest.mark.parametrize("case", PARAM_CASES)
def test_bad_params(case, tmp_path, monkeypatch, capfd):
    overrides, phrases = PARAM_CASES[case]
    root = make_repo(tmp_path, overrides, data=False)
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert_user_error(code, err, "params.yaml:", *phrases)
    assert files_under(root / "models") == [] and not (root / ".facegen_state").exists()


def test_family_missing_from_params(tmp_path, monkeypatch, capfd):
    root = make_repo(tmp_path, data=False)
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vea")
    assert_user_error(code, err, "models.vea is missing", "families: ['vae']")


def test_params_not_yaml(tmp_path, monkeypatch, capfd):
    root = make_repo(tmp_path, data=False)
    (root / "params.yaml").write_text("models: [vae\n")
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert_user_error(code, err, "params.yaml is not valid YAML")


def test_params_duplicate_key(tmp_path, monkeypatch, capfd):
    """PyYAML keeps the last of two equal keys silently; a pasted override must not win (or lose) unseen."""
    root = make_repo(tmp_path, data=False)
    text = (root / "params.yaml").read_text()
    assert text.count("      lr: 0.003\n") == 1
    (root / "params.yaml").write_text(text.replace("      lr: 0.003\n", "      lr: 0.003\n      lr: 0.03\n"))
    line_no = text.splitlines().index("      lr: 0.003") + 1
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert_user_error(code, err, f"params.yaml: key models.vae.train.lr appears twice (lines {line_no} and "
                                 f"{line_no + 1}); keep one")
    assert files_under(root / "models") == []


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoint_from_a_different_architecture(tmp_path, monkeypatch, capfd):
    root = make_repo(tmp_path, data=False)
    path = trained_vae(root)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["widths"] = [8, 16, 32]  # what a code or params change since training looks like
    torch.save(ckpt, path)
    code, err = run(root, monkeypatch, capfd, "evaluate", "--family", "vae")
    assert_user_error(code, err, "model.pt was saved from a different architecture", "retrain it")
    assert not (root / "reports").exists() and not (root / "metrics").exists()


def test_truncated_checkpoint(tmp_path, monkeypatch, capfd):
    root = make_repo(tmp_path, data=False)
    path = trained_vae(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, err = run(root, monkeypatch, capfd, "evaluate", "--family", "vae")
    assert_user_error(code, err, "model.pt is not a readable facegen checkpoint", "delete it and rerun")
    assert not (root / "reports").exists() and not (root / "metrics").exists()


class _RunsCode:
    """A pickle payload: unpickling it would run ``os.system`` (what weights_only=True forbids)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_loads_refuse_pickled_code(tmp_path, monkeypatch, capfd):
    marker = tmp_path / "code-ran"
    root = make_repo(tmp_path / "repo", data=False)
    path = root / "models" / "vae" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": "facegen-model/1", "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="not a readable facegen checkpoint"):
        safe_load(path)
    code, err = run(root, monkeypatch, capfd, "evaluate", "--family", "vae")
    assert_user_error(code, err, "not a readable facegen checkpoint")
    assert not marker.exists()
    assert "weights_only=True" in Path(checkpoint.__file__).read_text()
    # No module of ours calls torch.load any other way.
    for source in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("weights_only") == "True", f"{source}:{node.lineno}"


# -- outputs ----------------------------------------------------------------------------------------
def test_unwritable_output_dir_fails_before_training(tmp_path, monkeypatch, capfd):
    root = make_repo(tmp_path)
    with read_only(root / "models" / "vae"):
        code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert_user_error(code, err, "cannot write to models/vae/", "make it writable")
    assert not (root / "metrics").exists()  # failed before the first epoch


@pytest.mark.parametrize("failing_save", [1, 4], ids=["state-after-epoch-1", "final-model"])
def test_disk_full_while_saving_leaves_no_partial_file(failing_save, tmp_path, monkeypatch, capfd):
    """``torch.save`` runs out of space halfway through the n-th file (3 epoch states, then the model)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)  # tracking is not the point: skip creating a store
    root = make_repo(tmp_path)
    real_save, calls = torch.save, []

    def save_until_disk_full(obj, fh, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == failing_save:
            fh.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_disk_full)
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert_user_error(code, err, "No space left on device", "free disk space")
    assert not (root / "models" / "vae" / "model.pt").exists()
    written = files_under(root / "models") + files_under(root / "metrics") + files_under(root / ".facegen_state")
    assert [p.name for p in written if p.name.endswith(".tmp")] == []
    states = files_under(root / ".facegen_state")
    if failing_save == 1:
        assert states == []
    else:  # the last complete epoch state survives: a rerun resumes instead of starting over
        assert len(states) == 1 and safe_load(states[0])["epoch"] == 3


def test_ctrl_c_is_one_line_without_traceback(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    root = make_repo(tmp_path)

    def interrupted(obj, fh, *args, **kwargs):  # noqa: ANN001, ANN202
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing epoch 1's state

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert code == 130
    assert "interrupted; rerun the stage to continue" in error_line(err)
    assert files_under(root / "models") == [] and files_under(root / ".facegen_state") == []


# -- tracking ---------------------------------------------------------------------------------------
def test_mlflow_unreachable_stage_completes_and_warns_once(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    root = make_repo(tmp_path)
    code, err = run(root, monkeypatch, capfd, "train", "--family", "vae")
    assert code == 0, err
    assert "Traceback" not in err
    warnings_ = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1 and f"MLflow tracking unavailable at {UNREACHABLE}" in warnings_[0], err
    assert safe_load(root / "models" / "vae" / "model.pt")["family"] == "vae"
    assert len((root / "metrics" / "vae_train.csv").read_text().splitlines()) == 1 + 3


# -- the same contract on genuine processes -------------------------------------------------------
def test_real_process_bad_params_exit_code_and_one_line(tmp_path):
    root = make_repo(tmp_path, {"models": {"vae": {"train": {"lr": -1.0}}}}, data=False)
    proc = run_stage(root, "train", "--family", "vae")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: params.yaml: models.vae.train.lr must be > 0, got -1.0"
