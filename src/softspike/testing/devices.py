"""What a forward would do on a GPU, shown without one: fake CUDA tensors and a record of the ops run.

    with fake_cuda():                     # FakeTensorMode: CUDA tensors with no data and no GPU
        with torch.device("cuda"):
            net = build(checked)          # parameters on "cuda"
        x = torch.rand(2, 784, device="cuda")
        with DeviceAudit() as audit:
            loss = ...                    # forward, loss, monitors
    audit.problems()                      # [] when no CPU tensor was made and nothing synchronised

`DeviceAudit` is a dispatch mode: it sees every aten (and `softspike::`) operator call below the
Python layer. It records (a) each output of more than one element that lies on the CPU, the
telltale of a `torch.zeros(...)` without `device=`, and (b) each operator that hands a value to the
host (`.item()`, `bool(t)`, `if t:`, `nonzero`, `torch.equal`), which on a GPU waits for every
queued kernel: under fake tensors these raise `DataDependentOutputException`, and the audit names the
operator and the softspike line that called it before the exception goes on. No exception is made:
the Poisson encoder's seed (`draw_seed`) is one element, drawn on the CPU so that a seed gives the
same spikes on every device, and its two stream seeds are derived on the device.

A backward cannot run on fake CUDA in torch 2.14.1 (`hasPrimaryContext expects a valid device
index`, even for `nn.Linear`); what the audit shows is the forward with autograd recording.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

#: Operators that read a tensor's value on the host.
HOST_READS = frozenset({
    "aten::_local_scalar_dense", "aten::nonzero", "aten::equal", "aten::is_nonzero", "aten::masked_select",
    "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::item",
})


@dataclass(frozen=True)
class Event:
    op: str
    shape: tuple[int, ...]
    where: str  # the innermost softspike line outside this module, "file:line function: code"
    function: str

    def __str__(self) -> str:
        return f"{self.op} {list(self.shape)} at {self.where}"


def _caller() -> tuple[str, str]:
    for fr in reversed(traceback.extract_stack()[:-3]):
        name = fr.filename.replace("\\", "/")
        if "/softspike/" in name and not name.endswith("/softspike/testing/devices.py"):
            short = name.split("/softspike/", 1)[1]
            return f"softspike/{short}:{fr.lineno} {fr.name}: {(fr.line or '').strip()}", fr.name
    return "outside softspike", ""


class DeviceAudit(TorchDispatchMode):
    """Records CPU outputs, host reads and the `softspike::` operators called while it is entered."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: list[Event] = []
        self.host_reads: list[Event] = []
        self.softspike_ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func._schema.name
        if name.startswith("softspike::"):
            self.softspike_ops.append(name)
        if name in HOST_READS:
            where, fn = _caller()
            self.host_reads.append(Event(name, (), where, fn))
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel() > 1:
                where, fn = _caller()
                self.cpu.append(Event(name, tuple(t.shape), where, fn))
        return out

    def problems(self) -> list[str]:
        """One line per CPU tensor made and per host read, empty when the code stayed on the device."""
        return ([f"CPU tensor: {e}" for e in self.cpu] + [f"host read (a GPU sync): {e}" for e in self.host_reads])


@contextmanager
def fake_cuda() -> Iterator[Any]:
    """FakeTensorMode, under which `device="cuda"` works on a machine without a GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        yield mode
