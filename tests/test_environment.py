"""The CLI and the writers under faults of their environment: nothing half-written, caches never fatal.

* A read-only, full or size-limited ``--out``: one ``error:`` line naming the path and the cause,
  exit code 2, no partial file, no temp file, no empty ``<out>.json`` sidecar. Read-only is made real
  also for root (``chattr +i``, see tests.test_errors.read_only); size-limited is a genuine
  ``RLIMIT_FSIZE`` on a subprocess; full is a tiny tmpfs (skipped where mounting is not allowed).
* An unusable home (no writable cache) and damaged cache entries: the command still succeeds, with
  one warning at most; a damaged entry is recomputed.
* Every output follows the umask like a plain ``open()``, whatever writer made it.
* SIGTERM ends a CLI command like Ctrl-C: one line, exit code 143.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegen import artifacts, cli
from tests.test_cli import one_line_error, run, ws  # noqa: F401 - ws: the tiny trained workspace fixture
from tests.test_errors import read_only

SRC = Path(__file__).resolve().parents[1] / "src"


def edit_args(ws: Path, out: Path) -> list[str]:
    return ["edit", str(ws / "a.jpg"), "--family", "vae", "--attr", "Smiling", "--steps", "3", "--aligned",
            "--out", str(out)]


def cli_process(ws: Path, out: Path, cache: Path, limit: int | None = None) -> subprocess.Popen:
    """``facegen edit`` started as a real process, optionally with a file size limit (``ulimit -f``)."""
    def set_limit() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = {**os.environ, "PYTHONPATH": str(SRC), "FACEGEN_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    return subprocess.Popen([sys.executable, "-m", "facegen.cli", *edit_args(ws, out), "--models-dir",
                             str(ws / "models"), "--prepared-dir", str(ws / "prepared"), "--device", "cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=set_limit)


def finished(proc: subprocess.Popen) -> tuple[int, str]:
    """Exit code and stderr of a :func:`cli_process`."""
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def only_line(stderr: str, prefix: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr
    return lines[0]


# -- --out: read-only, size-limited, full --------------------------------------------------------------
def test_read_only_out_is_one_line_before_any_work(ws, tmp_path, capsys):
    out_dir = tmp_path / "ro"
    with read_only(out_dir):
        for args in (["sample", "--family", "vae", "-n", "4", "--out", str(out_dir / "s.png")],
                     edit_args(ws, out_dir / "e.png")):
            assert run(ws, *args) == 2
            line = one_line_error(capsys)
            assert line.startswith(f"error: cannot write to {out_dir}/ (") and "choose another --out" in line, line
            assert any(cause in line for cause in ("Permission denied", "Operation not permitted")), line
    assert list(out_dir.iterdir()) == []
    (tmp_path / "file").write_text("x")  # a path under a file: refused the same way
    assert run(ws, "sample", "--family", "vae", "--out", str(tmp_path / "file" / "s.png")) == 2
    assert f"cannot write to {tmp_path / 'file'}/" in one_line_error(capsys)


def test_size_limited_out_is_one_line_and_leaves_nothing(ws, tmp_path):
    """``ulimit -f``: the image is over the limit (EFBIG); the direction cache entry too (one warning)."""
    out_dir, cache = tmp_path / "out", tmp_path / "cache"
    code, err = finished(cli_process(ws, out_dir / "e.png", cache, limit=700))
    assert code == 2, err
    line = only_line(err, "error:")
    assert line.startswith(f"error: File too large ({out_dir / 'e.png'}): the file size limit (`ulimit -f`)"), line
    assert "not caching (cannot " in only_line(err, "warning:")  # the first cache entry over the limit
    assert list(out_dir.iterdir()) == []  # no image, no temp file, no sidecar
    assert not list(cache.rglob("*.tmp"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A tmpfs of a chosen size (root only, and only where mounting is allowed), unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True)


def test_full_disk_leaves_no_empty_sidecar(ws, tmp_path, tiny_disk, capsys):
    """A disk with room for the edited image but not for its ``<out>.json``: before, an empty sidecar
    was left beside the image; now the sidecar is absent and the error names it."""
    assert run(ws, *edit_args(ws, tmp_path / "probe.png")) == 0
    page = os.sysconf("SC_PAGE_SIZE")
    disk = tiny_disk(-(-(tmp_path / "probe.png").stat().st_size // page) * page)  # the image's pages, no more
    capsys.readouterr()
    assert run(ws, *edit_args(ws, disk / "e.png")) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"error: No space left on device ({disk / 'e.json'}): free disk space"), line
    assert sorted(p.name for p in disk.iterdir()) == ["e.png"]  # whole image, no sidecar, no temp file
    assert (disk / "e.png").read_bytes() == (tmp_path / "probe.png").read_bytes()


# -- caches: only an optimisation -------------------------------------------------------------------
def test_unusable_home_costs_one_warning(ws, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    for var in (artifacts.CACHE_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "file" / "home"))  # ~/.cache cannot be created
    monkeypatch.setattr(artifacts, "_cache_warned", False)  # once per process: this test's process is pytest's
    out = tmp_path / "e.png"
    assert run(ws, *edit_args(ws, out)) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: not caching (cannot write {tmp_path / 'file' / 'home'}/.cache/facegen/"), err
    assert "Not a directory" in warning and "recomputed each time" in warning
    assert Image.open(out).size[0] > 0 and json.loads(out.with_suffix(".json").read_text())["command"] == "edit"


def test_damaged_cache_entries_are_recomputed(ws, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv(artifacts.CACHE_ENV, str(cache))
    assert run(ws, *edit_args(ws, tmp_path / "first.png")) == 0
    (direction,) = cache.glob("directions/*.pt")
    (template,) = cache.glob("templates/*.json")
    good_direction, good_template = torch.load(direction, weights_only=True), template.read_text()
    for damage in (b"", b"PK\x03\x04 truncated", b"{\"points\": [[0, 0]]}"):
        direction.write_bytes(damage)
        template.write_bytes(damage)
        capsys.readouterr()
        assert run(ws, *edit_args(ws, tmp_path / "again.png")) == 0
        assert "warning" not in capsys.readouterr().err
        assert (tmp_path / "again.png").read_bytes() == (tmp_path / "first.png").read_bytes()
        assert torch.equal(torch.load(direction, weights_only=True)["direction"], good_direction["direction"])
        assert template.read_text() == good_template


@pytest.mark.slow  # three CLI processes at once (~20 s on 2 cores)
def test_three_edits_at_once_on_a_fresh_cache(ws, tmp_path):
    """Each writes the same cache entries at the same moment: temp file + rename, so every reader sees a
    whole entry or none, and all three results are the same."""
    cache = tmp_path / "cache"
    procs = [cli_process(ws, tmp_path / f"e{i}.png", cache) for i in range(3)]
    for proc in procs:
        code, err = finished(proc)
        assert code == 0 and "warning" not in err and "Traceback" not in err, err
    first = (tmp_path / "e0.png").read_bytes()
    assert all((tmp_path / f"e{i}.png").read_bytes() == first for i in (1, 2))
    assert sorted(p.parent.name for p in cache.rglob("*") if p.is_file()) == ["directions", "dlib", "templates"]
    assert not list(cache.rglob(".*.tmp"))


# -- modes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_outputs_follow_the_umask(ws, tmp_path, umask):
    from facegen.reporting.grids import save_figure, save_grid

    import matplotlib.pyplot as plt

    old = os.umask(umask)
    try:
        written = [
            artifacts.write_text(tmp_path / "a.txt", "x"),
            artifacts.write_json({"a": 1}, tmp_path / "a.json"),
            artifacts.write_npy(tmp_path / "a.npy", np.zeros(3)),
            artifacts.atomic_save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "model.pt"),
            artifacts.write_image(tmp_path / "a.jpg", Image.new("RGB", (4, 4))),
            save_grid(torch.zeros(2, 3, 4, 4), tmp_path / "grid.png"),
            save_figure(plt.figure(), tmp_path / "fig.png"),
        ]
        assert run(ws, *edit_args(ws, tmp_path / "e.png")) == 0
        written += [tmp_path / "e.png", tmp_path / "e.json"]
        (tmp_path / "plain").open("w").close()  # what they must match
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        p.name: oct(0o666 & ~umask) for p in written}
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o666 & ~umask


# -- signals -----------------------------------------------------------------------------------------
def test_sigterm_ends_a_command_like_ctrl_c(ws, tmp_path, monkeypatch, capsys):
    def terminated(args) -> None:  # noqa: ANN001 - the signal arrives while the command works
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(cli, "cmd_sample", terminated)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert run(ws, "sample", "--family", "vae", "--out", str(tmp_path / "s.png")) == 128 + signal.SIGTERM
    assert one_line_error(capsys) == "error: interrupted (SIGTERM)"
    assert not (tmp_path / "s.png").exists()
    # the caller's handler is back: a test session (or a notebook) calling cli.main is not left raising
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _worker_sigterm_default(_: int) -> bool:
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_forked_workers_die_on_sigterm_while_their_parent_raises():
    """A prepare worker that raised Terminated would run clean-up inherited mid-fork, which can hang
    Pool.terminate() (seen in unit-suite runs): task_map's workers are forked with the default action,
    also those terminated before they took a task."""
    from facegen.data import task_map
    from facegen.errors import interrupt_on_termination

    with interrupt_on_termination():
        raising = signal.getsignal(signal.SIGTERM)
        assert raising is not signal.SIG_DFL
        with task_map(2) as tasks:
            assert all(tasks(_worker_sigterm_default, range(4)))
        for _ in range(10):  # terminated at once, workers still starting: each exit must not hang
            with task_map(2):
                pass
        assert signal.getsignal(signal.SIGTERM) is raising
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
