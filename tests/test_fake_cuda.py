"""Every zoo network's training forward on fake CUDA tensors: no CPU tensor is made, nothing waits.

FakeTensorMode with device "cuda" gives CUDA tensors without a GPU (softspike.testing.devices).
What runs is what the training loop runs per step (augmentation, encoder, every layer, readout, loss
with autograd recording, inside `compact_saved_spikes`, with the loop's firing-rate monitor), and
the audit fails it on any CPU tensor of more than one element and on any host read (a GPU sync).
A backward cannot run there in torch 2.14.1; the kernels' backward is what the interpreter suite
proves (tests/test_triton_interpret.py).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from softspike.kernels.bitpack import compact_saved_spikes
from softspike.kernels.triton import unavailable
from softspike.models import build, check_spec, zoo_names
from softspike.models.load import read_spec_text
from softspike.monitor import Monitor
from softspike.testing.devices import DeviceAudit, fake_cuda
from softspike.train.augment import random_shift
from softspike.train.loop import readout_loss
from softspike.train.monitor import FiringRates

TRITON = unavailable() is None


def _zoo_net(name: str) -> tuple[object, nn.Module]:
    checked = check_spec(json.loads(read_spec_text(name)[0]), name)
    with torch.device("cuda"):  # the parameters on the (fake) GPU; the forward runs without a default device
        net = build(checked)
    return checked, net


@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
@pytest.mark.parametrize("name", zoo_names())
def test_zoo_training_forward_stays_on_the_device(name: str, loss_kind: str) -> None:
    with fake_cuda():
        checked, net = _zoo_net(name)
        net.train()
        x = torch.rand(2, *checked.spec.input_shape, device="cuda")  # type: ignore[attr-defined]
        y = torch.tensor([0, 1], device="cuda")
        with FiringRates(net.neuron_layers(), per_neuron=True) as monitor, DeviceAudit() as audit:
            x = random_shift(x, 2)
            with compact_saved_spikes():
                rates = net.spikes(x).mean(0)
                loss = readout_loss(net, rates, y, loss_kind)
            hits = (rates.argmax(1) == y).sum()
        assert audit.problems() == []
        assert loss.device.type == "cuda" and loss.requires_grad and loss.grad_fn is not None
        assert hits.device.type == "cuda"
        assert set(monitor._sums) == {n for n, _ in net.neuron_layers()}
        if TRITON:  # every neuron layer took the Triton scan (the fake kernel stands in for it)
            assert audit.softspike_ops.count("softspike::lif_multistep") == len(net.neuron_layers())


@pytest.mark.parametrize("neurons", [None, 3, [0, 2]])
@pytest.mark.parametrize("v", [False, True])
def test_monitor_on_fake_cuda_copies_only_its_records(v: bool, neurons: int | list[int] | None) -> None:
    with fake_cuda():
        checked, net = _zoo_net("mnist_fc")
        x = torch.rand(2, *checked.spec.input_shape, device="cuda")  # type: ignore[attr-defined]
        with Monitor(net, v=v, neurons=neurons, samples=1, every=2) as mon, DeviceAudit() as audit:
            net.spikes(x)
            net.spikes(x)  # the kept neuron indices are made on the device once, not copied there per call
        others = [e for e in audit.cpu if not e.where.startswith("softspike/monitor/record.py")]
        assert others == [] and audit.host_reads == []
        given = [e for e in audit.cpu if e.function == "_index"]  # a list of indices reaches the device once
        assert len(given) == (len(net.neuron_layers()) if isinstance(neurons, list) else 0)
        assert all(e.op == "aten::_to_copy" for e in audit.cpu if e not in given)  # records go to the CPU, by design
        s = mon.spikes(mon.paths[0])
        assert s.shape[:2] == (checked.spec.T // 2, 2)  # type: ignore[attr-defined]  # one sample per call
        assert neurons is None or s.shape[2] == (neurons if isinstance(neurons, int) else len(neurons))


def test_single_step_encoder_reads_nothing_per_step() -> None:
    """A time-dependent encoder called once per step on the same input compares nothing on the host."""
    from softspike.plugins.encoders import LatencyEncoder

    with fake_cuda():
        enc = LatencyEncoder(T=4)
        x = torch.rand(2, 5, device="cuda")
        with DeviceAudit() as audit:
            steps = [enc(x) for _ in range(8)]  # two samples' worth: the second starts over at step 0
        assert audit.problems() == []
        assert all(s.shape == (2, 5) and s.device.type == "cuda" for s in steps)


def test_the_audit_names_the_operator_and_the_line() -> None:
    class Careless(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros(x.shape[-1])  # no device=: a CPU tensor
            if x.sum() > 0:  # a host read
                return x + mask.to(x.device)
            return x

    with fake_cuda(), DeviceAudit() as audit:
        with pytest.raises(Exception, match="_local_scalar_dense"):  # DataDependentOutputException
            Careless()(torch.rand(3, 4, device="cuda"))
    # a test file is not softspike code: the line is named as outside softspike, the op is named
    assert [str(e).split(" at ")[0] for e in audit.cpu] == ["aten::zeros [4]"]
    assert [e.op for e in audit.host_reads] == ["aten::_local_scalar_dense"]


def test_the_audit_finds_the_softspike_line() -> None:
    from softspike.core.encoder import check_intensity

    with fake_cuda(), DeviceAudit() as audit:
        check_intensity(torch.rand(5, device="cuda"), "test")  # on the device: no host read
        assert audit.host_reads == []
        with pytest.raises(Exception, match="_local_scalar_dense"):
            check_intensity(torch.rand(5), "test")  # a CPU tensor is checked on the host, with a message
    assert audit.host_reads and audit.host_reads[0].where.startswith("softspike/core/encoder.py:")


def test_poisson_seed_is_the_one_allowed_cpu_tensor() -> None:
    from softspike.kernels.sampling import bernoulli_steps

    with fake_cuda(), DeviceAudit() as audit:
        spikes = bernoulli_steps(torch.rand(3, 5, device="cuda"), 4)
    assert spikes.shape == (4, 3, 5) and spikes.device.type == "cuda"
    assert audit.problems() == [] and "softspike::poisson" in audit.softspike_ops


def test_cpu_intensity_error_keeps_its_message() -> None:
    from softspike.plugins.encoders import PoissonEncoder

    with pytest.raises(ValueError, match=r"intensities must lie in \[0, 1\], got min"):
        PoissonEncoder().encode(torch.tensor([0.5, 1.5]), 3)


# -- the spike ops on CUDA: the Triton kernels, chosen automatically, forced by backend="triton" -----------

needs_triton = pytest.mark.skipif(not TRITON, reason=f"triton does not import here: {unavailable()}")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_spike_ops_reach_the_triton_kernels_on_cuda(dtype: torch.dtype) -> None:
    from softspike.kernels.bitpack import pack_spikes, unpack_spikes
    from softspike.kernels.sampling import bernoulli_steps
    from softspike.kernels.spike_linear import SpikeLinear
    from softspike.kernels.triton.late import LatePacked

    with fake_cuda(), DeviceAudit() as audit:
        with torch.device("cuda"):
            lin = SpikeLinear(70, 40, dtype=dtype)
        x = bernoulli_steps(torch.rand(4, 3, 70, device="cuda"), 1)[0].to(dtype)
        with compact_saved_spikes(min_bytes=0):
            y = lin(x)
        saved = pack_spikes(x, 0)
        assert isinstance(saved, LatePacked) and unpack_spikes(saved) is x  # fake: no flag lands, x is kept
        assert audit.softspike_ops.count("softspike::spike_linear") == 1
        assert {"softspike::poisson", "softspike::pack_bits"} <= set(audit.softspike_ops)
        assert y.shape == (4, 3, 40) and y.dtype == dtype and y.requires_grad
        assert audit.problems() == []
        lin.backend = "torch"  # forced dense: no spike-linear op
        lin(x)
        assert audit.softspike_ops.count("softspike::spike_linear") == 1


def test_spike_op_kernel_choice_and_forcing(monkeypatch: pytest.MonkeyPatch) -> None:
    from softspike.core.backends import BackendError
    from softspike.kernels import devices, native
    from softspike.kernels.triton import register

    cpu = torch.zeros(8)
    assert devices.spike_op_kernel("op", (cpu, None)) == ("native" if native.available() else "torch")
    assert devices.spike_op_kernel("op", (cpu.double(),)) == "torch"
    assert devices.spike_op_kernel("op", (cpu,), limit="too many outputs") == "torch"
    with pytest.raises(BackendError, match=r"softspike::op: backend='triton' cannot run here: the Triton kernels "
                                           r"take CUDA tensors, got cpu"):
        devices.spike_op_kernel("op", (cpu,), "triton")
    with pytest.raises(BackendError, match="backend must be one of auto, native, triton, torch, got 'cuda'"):
        devices.spike_op_kernel("op", (cpu,), "cuda")
    with fake_cuda():
        gpu = torch.zeros(8, device="cuda")
        with pytest.raises(BackendError, match="the CPU kernels take CPU tensors, got cuda:0"):
            devices.spike_op_kernel("op", (gpu,), "native")
        with pytest.raises(BackendError, match=r"bfloat16, got torch\.float16, torch\.float32"):
            devices.spike_op_kernel("op", (gpu, gpu.half()), "triton")
        assert devices.spike_op_kernel("op", (gpu.double(),)) == "torch"
        monkeypatch.setattr(register, "unavailable", lambda: "triton does not import (as on a CPU-only torch)")
        assert devices.spike_op_kernel("op", (gpu,)) == "torch"
        with pytest.raises(BackendError, match=r"backend='triton' cannot run here: triton does not import"):
            devices.spike_op_kernel("op", (gpu,), "triton")


def test_late_packed_lets_go_once_the_flag_lands() -> None:
    from softspike.kernels.bitpack import pack_bits
    from softspike.kernels.triton.late import LatePacked, settle_pending

    class Flag:  # stands in for the pinned copy of the device's flag and its CUDA event
        def __init__(self) -> None:
            self.landed: bool | None = None

        def value(self) -> bool | None:
            return self.landed

    spikes = (torch.rand(128, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    analog = torch.rand(128)
    flags = [Flag(), Flag(), Flag()]
    recs = [LatePacked(t.to(dt), *pack_bits(t), flag=f)  # type: ignore[arg-type]
            for t, dt, f in ((spikes, torch.float16, flags[0]), (analog, torch.float32, flags[1]),
                             (spikes, torch.float32, flags[2]))]
    assert recs[0].unpack() is recs[0].dense  # nothing has landed: the tensor itself
    flags[2].landed = True
    settle_pending()  # oldest first: the first record has not landed, so the sweep stops there
    assert recs[2].dense is not None and recs[2].bits is not None
    flags[0].landed, flags[1].landed = True, False
    settle_pending()
    assert recs[0].dense is None and recs[1].bits is None and recs[2].dense is None
    back = recs[0].unpack()
    assert back.dtype == torch.float16 and torch.equal(back.float(), spikes)  # from the bits
    assert recs[1].unpack() is recs[1].dense and torch.equal(recs[2].unpack(), spikes)
