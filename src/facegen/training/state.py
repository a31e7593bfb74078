"""Resumable training state: which file a run may continue from, and what happens to one it may not.

A state file is named by the params hash (``<state_dir>/train-<family>-<paramshash>.pt``) and
carries the hash of the code that wrote it. A run continues from it only when both match; any
other state (other code, an older state format, a file that is unreadable or from another
architecture) is moved aside to ``<name>.stale.pt`` with one warning, and training starts from
epoch 1. So a stale file can neither block training for good nor silently hand weights trained by
old code to new code.

Why the code hash is taken over the *loaded modules* rather than the stage's code deps in
``dvc.yaml``: it is exactly the code that runs in this process, it needs no DVC (stages also run
as plain scripts and under ``torchrun``), and it cannot be wrong when ``dvc.yaml`` forgets a
module. Being conservative costs at most a restart from epoch 1 after an unrelated edit.
"""
from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path
from typing import Any

import facegen
from facegen.errors import CheckpointError
from facegen.models.checkpoint import safe_load

STATE_FORMAT = "facegen-train-state/2"  # /2: adds "code"; /1 files are set aside like any stale state
_PACKAGE = Path(facegen.__file__).resolve().parent


def code_hash() -> str:
    """Short hash of the source of every facegen module loaded now, plus the entry-point script.

    Taken when ``fit`` starts, so it covers the model, loop, data and stage code of this run; the
    same code always loads the same modules by then, so the hash is stable across reruns.
    """
    files: dict[str, Path] = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        path = Path(path).resolve()
        if name == "__main__" or _PACKAGE in path.parents:
            files[str(path.relative_to(_PACKAGE)) if _PACKAGE in path.parents else path.name] = path
    digest = hashlib.sha256()
    for key in sorted(files):
        try:
            digest.update(key.encode() + b"\0" + files[key].read_bytes() + b"\0")
        except OSError:  # a module loaded from a zip or a deleted file: its name still counts
            digest.update(key.encode() + b"\0")
    return digest.hexdigest()[:12]


def set_aside(path: Path, reason: str) -> None:
    """Move an unusable state out of the way (one warning) so the next epoch writes a fresh one."""
    stale = path.with_name(f"{path.stem}.stale.pt")
    try:
        path.replace(stale)
        where = f"moved it to {stale}"
    except OSError:
        where = "ignoring it"
    warnings.warn(f"{path} {reason}; {where} and training from epoch 1", stacklevel=3)


def load_matching(path: Path | None, code: str) -> dict[str, Any] | None:
    """The state in ``path`` if it was written by this code in the current format, else None.

    A state that exists but does not match is set aside (see the module doc). Whether its tensors
    fit the model is checked by the caller, which sets it aside the same way if they do not.
    """
    if path is None or not path.is_file():
        return None
    try:
        state = safe_load(path)
    except CheckpointError:
        set_aside(path, "is not a readable training state")
        return None
    if state.get("format") != STATE_FORMAT:
        set_aside(path, f"is a {state.get('format', 'unknown')} file from an older facegen")
        return None
    if state.get("code") != code:
        set_aside(path, f"was written by different code (code hash {state.get('code')}, now {code})")
        return None
    return state
