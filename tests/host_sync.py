"""Find host syncs on the CPU: the operators a piece of code runs, and which of them would make the
host wait for a GPU.

On CUDA, Python enqueues kernels and runs ahead of the GPU until something needs a value on the
host; then it waits for everything queued before it, and the GPU idles while Python catches up.
At batch 64 a training step is a few hundred small kernels, so one such wait per step costs more
than the step's arithmetic. A CPU has no such wait, so a CPU test cannot time it, but it can see the
operators that cause it:

* operators that return a host value or a shape that depends on tensor values
  (:data:`SYNCING_OPS`: ``.item()``/``float(t)``/``if t:`` are ``aten::_local_scalar_dense``;
  ``nonzero``, ``unique``, ``masked_select`` and boolean-mask indexing have data-dependent shapes;
  CUDA's ``bincount`` reads the input's min/max on the host);
* Python-level copies to the host (``.cpu()``, ``.numpy()``, ``.tolist()``, ``.item()``) and device
  moves without ``non_blocking=True`` (a pageable host-to-device copy waits for the stream too).

:class:`HostSyncRecorder` records both (a ``TorchDispatchMode`` for operators, which sees what the
autograd engine and optimisers run too, and a ``TorchFunctionMode`` for the Python-level calls).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::equal", "aten::allclose",
    "aten::nonzero", "aten::argwhere", "aten::masked_select", "aten::bincount", "aten::histc",
    "aten::unique_dim", "aten::_unique", "aten::_unique2", "aten::unique_consecutive",
    "aten::repeat_interleave", "aten::_assert_async", "aten::to_sparse",
})
HOST_CALLS = frozenset({"cpu", "numpy", "tolist", "item"})
MOVES = frozenset({"to", "cuda"})


def _boolean_index(func: Any, args: tuple) -> bool:
    """``x[mask]`` / ``x[mask] = v``: indexing with a boolean tensor has a data-dependent shape."""
    name = func._schema.name
    if name not in ("aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"):
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


def _names_device(args: tuple, kwargs: dict) -> bool:
    if "device" in kwargs:
        return True
    return any(isinstance(a, (torch.device, str)) or (isinstance(a, int) and not isinstance(a, bool))
               for a in args[1:])


class _Operators(TorchDispatchMode):
    def __init__(self, recorder: HostSyncRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func._schema.name
        self.recorder.ops.append(name)
        if name in SYNCING_OPS or _boolean_index(func, args):
            self.recorder.syncs.append(name)
        return func(*args, **(kwargs or {}))


class _PythonCalls(TorchFunctionMode):
    def __init__(self, recorder: HostSyncRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if getattr(func, "__self__", None) is None and args and isinstance(args[0], torch.Tensor):
            if name in HOST_CALLS:
                self.recorder.syncs.append(f"Tensor.{name}")
            elif name in MOVES and _names_device(args, kwargs) and not kwargs.get("non_blocking"):
                self.recorder.syncs.append(f"Tensor.{name}(device) without non_blocking")
        return func(*args, **kwargs)


class HostSyncRecorder:
    """``with HostSyncRecorder() as rec: ...``: ``rec.ops`` every operator name run inside, in order;
    ``rec.syncs`` those that make a host wait for a GPU (with CUDA tensors)."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.syncs: list[str] = []
        self._modes = (_PythonCalls(self), _Operators(self))

    def __enter__(self) -> HostSyncRecorder:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
