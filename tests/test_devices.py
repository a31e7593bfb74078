"""Device portability, checked on a CPU-only machine.

1. No source file picks a device by name: "cpu"/"cuda" literals may only appear where the device is
   *chosen* (runtime.py; the params and CLI choices), as a load-to-host default, or in a
   comparison that asks which device something is (``x.device.type == "cuda"``). Everything else takes its
   device from a tensor or from ``Runtime``.
2. Every registered family, moved to PyTorch's ``meta`` device (shapes, no data), runs its
   training step and latent-space methods there: any tensor made on a fixed device would collide
   with the meta tensors. Where an op has no meta kernel the failure must not be a device clash.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from facegen.config import MODEL_CONFIGS
from facegen.data.dataset import Batch
from facegen.errors import FacegenError
from facegen.models import FAMILIES, build
from facegen.models.base import ENCODE

REPO = Path(__file__).resolve().parents[1]
DEVICE_NAMES = ("cpu", "cuda", "mps", "xpu")
# Where devices are chosen by name: the runtime resolves them, params and the CLI offer them.
CHOOSERS = {"src/facegen/runtime.py", "src/facegen/config.py"}
LOAD_DEFAULT_PARAMS = {"device", "map_location"}  # `def load(path, device="cpu")`: callers pass rt.device


def _is_device_name(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.split(":")[0] in DEVICE_NAMES)


def _allowed_literals(tree: ast.AST) -> set[int]:
    """ids of literal nodes that are allowed uses (see module doc)."""
    ok: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = list(zip(node.args.args[len(node.args.args) - len(node.args.defaults):], node.args.defaults))
            defaults += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            ok |= {id(d) for a, d in defaults if a.arg in LOAD_DEFAULT_PARAMS and a in args}
        elif isinstance(node, ast.Compare):
            # x.device.type == "cuda", args.device == "cuda": asking which device, not choosing one.
            ok |= {id(side) for side in (node.left, *node.comparators)}
        elif isinstance(node, ast.keyword) and node.arg == "choices":
            ok |= {id(n) for n in ast.walk(node.value)}  # argparse --device choices
    return ok


def hard_coded_devices(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    allowed = _allowed_literals(tree)
    found = [(node.lineno, repr(node.value)) for node in ast.walk(tree)
             if _is_device_name(node) and id(node) not in allowed]
    found += [(node.lineno, ".cuda()") for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda"]
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_no_module_hard_codes_a_device():
    offenders = {}
    for path in sorted([*(REPO / "src" / "facegen").rglob("*.py"), *(REPO / "stages").glob("*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel not in CHOOSERS and (found := hard_coded_devices(path)):
            offenders[rel] = found
    assert not offenders, f"device names hard-coded outside runtime.py: {offenders}"


def test_the_scan_catches_hard_coded_devices(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nx = torch.zeros(3, device='cuda')\ny = x.to('cpu')\nz = x.cuda()\n"
                   "def f(t, device='cpu'):\n    return t.device.type == 'cuda'\n")
    assert hard_coded_devices(bad) == ["2: 'cuda'", "3: 'cpu'", "4: .cuda()"]


# -- meta device ------------------------------------------------------------------------------------
CLASH_MESSAGES = ("not on the expected device", "same device", "found at least two devices")


def _device_clash(err: Exception) -> bool:
    """PyTorch's wording for an op mixing devices (vs. an op that merely has no meta kernel)."""
    return any(phrase in str(err) for phrase in CLASH_MESSAGES)


def _bare_tensors(model: nn.Module) -> list[str]:
    """Tensors kept as plain attributes: ``model.to(device)`` would leave them behind."""
    return [f"{name}.{attr}" for name, module in model.named_modules() for attr, value in vars(module).items()
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter)]


def _meta_calls(model, batch: Batch) -> dict:
    calls = {"train_step": lambda: model.train_step(batch, model.optimizers()),
             "val_step": lambda: model.val_step(batch),
             "sample": lambda: model.sample(2, torch.Generator().manual_seed(0))}
    if ENCODE in model.capabilities:
        calls["encode"] = lambda: model.encode(batch.images)
        calls["reconstruct"] = lambda: model.reconstruct(batch.images)
    return calls


def _on_meta(out) -> bool:
    tensors = list(out.values()) if isinstance(out, dict) else [out]
    return all(t.device.type == "meta" for t in tensors)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_runs_on_the_meta_device(family):
    size = 16
    model = build(family, MODEL_CONFIGS[family](), size)
    assert _bare_tensors(model) == []
    model = model.to("meta")
    assert {p.device.type for p in [*model.parameters(), *model.buffers()]} == {"meta"}
    batch = Batch(torch.rand(4, 3, size, size, device="meta"), torch.zeros(4, 8, device="meta"))
    ran = []
    for name, call in _meta_calls(model, batch).items():
        try:
            out = call()
        except FacegenError:  # a declared precondition (e.g. the VQ-VAE's prior is trained later)
            continue
        except (RuntimeError, NotImplementedError) as err:  # no meta kernel (autocast, data-dependent ops)
            assert not _device_clash(err), f"{family}.{name}: {err}"
            continue
        assert _on_meta(out), f"{family}.{name} returned tensors off the model's device"
        ran.append(name)
    assert "train_step" in ran or "encode" in ran, f"{family}: nothing ran on meta ({ran})"


def test_meta_check_catches_a_fixed_device_tensor():
    class Bad(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ones(x.shape[1:])  # made on the default device, not x's

    with pytest.raises(RuntimeError) as err:
        Bad()(torch.rand(2, 3, device="meta"))
    assert _device_clash(err.value)
