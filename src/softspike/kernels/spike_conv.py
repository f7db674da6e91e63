"""A 2-D convolution for spike input: adds up the weight slices at the positions that fired.

With binary input X, each output Y[n, o, oy, ox] = b[o] + Σ W[o, c, ky, kx] over the inputs
(c, oy·s − p + ky·d, ox·s − p + kx·d) that fired, and the weight gradient
dW[o, c, ky, kx] = Σ dY[n, o, oy, ox] over the same pairs. At the 5-20% firing rates of SNNs that is
a fraction of a dense convolution's work. Each update is one contiguous row of the output
channels of a group (weights repacked as [G, KH, KW, C/G, O/G], Y and dY channels-last), so Y
comes back channels-last (a [N, n_out, OH, OW] tensor with NHWC strides), which batch norm, pooling
and the neuron kernels read in place.

The rule: X is packed to bits (one pass, which also counts the ones and checks that X is 0/1).
Binary X at a density up to `DENSE_ABOVE` runs the sums, forward and weight gradient, from the bits;
denser binary X runs the dense convolutions (mkldnn), X unpacked from the bits for the weight
gradient; non-binary X runs dense with X itself kept. The input gradient is always the dense
transposed convolution (dL/dX is needed at every position: the surrogate gradient is nowhere 0).
Crossover, measured on the benchmark's conv 64->64, 3x3, 32x32, N=256, one thread (thread CPU
time, docs/benchmarks.md): the sums take 0.32x mkldnn's time forward and 0.14x for the weight
gradient at density 0.02, 0.38x and 0.21x at 0.07, 0.65x and 0.63x at 0.3, 0.88x and 1.04x at 0.5.

In eager mode binary X is kept for backward as its bits only (32x smaller than float32); under
torch.compile or export, whether X is binary is not known while tracing, so X is kept too.
The sums run in another order than mkldnn's, so Y and dW agree with `nn.Conv2d` to float32
rounding, not bit for bit; so does dX (the transposed convolution reads the weight channels-last).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import grad as conv_grad

from softspike.core.errors import KernelInputError
from softspike.kernels import native
from softspike.kernels.common import check_tensor, lib, pooled_like, ptr

#: Above this fraction of ones the dense convolutions are faster (see the module docstring).
DENSE_ABOVE = 0.4


def _is_channels_last(x: Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _geometry(op: str, x_shape: list[int], w_shape: list[int], stride: list[int], padding: list[int],
              dilation: list[int], groups: int, channels_last: bool) -> list[int]:
    """[N, C, H, W, n_out, G, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, channels_last] after the shape checks."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise KernelInputError(f"softspike::{op}: x [N, C, H, W] and weight [n_out, C/groups, KH, KW] must be 4-d, got "
                               f"{x_shape} and {w_shape}")
    if not all(len(v) == 2 for v in (stride, padding, dilation)):
        raise KernelInputError(f"softspike::{op}: stride, padding and dilation take two numbers each")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or groups < 1:
        raise KernelInputError(f"softspike::{op}: stride and dilation must be >= 1, padding >= 0, groups >= 1")
    N, C, H, W = x_shape
    n_out, Cg, KH, KW = w_shape
    if n_out % groups or Cg * groups != C or min(KH, KW) < 1:
        raise KernelInputError(f"softspike::{op}: x has {C} channels, weight {w_shape} with {groups} groups")
    out = []
    for size, k, s, p, d in zip((H, W), (KH, KW), stride, padding, dilation):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise KernelInputError(f"softspike::{op}: kernel {KH}x{KW} (dilation {dilation}) exceeds the padded "
                                   f"input {H}x{W}")
        out.append((size + 2 * p - span) // s + 1)
    return [N, C, H, W, n_out, groups, KH, KW, *stride, *padding, *dilation, *out, int(channels_last)]


def _check(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
           dilation: list[int], groups: int) -> list[int]:
    check_tensor(op, "x", x)
    check_tensor(op, "weight", weight)
    geom = _geometry(op, list(x.shape), list(weight.shape), stride, padding, dilation, groups, _is_channels_last(x))
    if bias is not None:
        check_tensor(op, "bias", bias)
        if bias.shape != (geom[4],):
            raise KernelInputError(f"softspike::{op}: bias must have shape [{geom[4]}], got {list(bias.shape)}")
    return geom


def _out_like(geom: list[int], x: Tensor) -> Tensor:
    N, n_out, OH, OW = geom[0], geom[4], geom[14], geom[15]
    return torch.empty_permuted((N, n_out, OH, OW), (0, 2, 3, 1), dtype=x.dtype, device=x.device)


def _packed_weight(weight: Tensor, groups: int) -> Tensor:
    """[n_out, C/G, KH, KW] -> [G, KH, KW, C/G, n_out/G] contiguous: one row per (tap, input channel)."""
    n_out, Cg, KH, KW = weight.shape
    return weight.detach().reshape(groups, n_out // groups, Cg, KH, KW).permute(0, 3, 4, 2, 1).contiguous()


def _bits_shape(geom: list[int]) -> tuple[int, int, int, int]:
    """X as bits: [N, H, W, ceil(C / 64)] int64 words, bit c of a pixel's words for channel c."""
    return geom[0], geom[2], geom[3], (geom[1] + 63) // 64


@torch.library.custom_op("softspike::spike_conv2d", mutates_args=(), device_types="cpu")
def spike_conv2d_forward(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                         dilation: list[int], groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """(Y [N, n_out, OH, OW] channels-last, X as bits [N, H, W, ceil(C/64)] int64, the number of ones in X
    as an int64 scalar, -1 if X is not all 0/1)."""
    geom = _check("spike_conv2d", x, weight, bias, stride, padding, dilation, groups)
    N = geom[0]
    bits = torch.empty(_bits_shape(geom), dtype=torch.int64)
    y = pooled_like((N, geom[4], geom[14], geom[15]), (0, 2, 3, 1))  # channels-last, a recycled buffer
    g = torch.tensor(geom, dtype=torch.int64)
    xc = x if geom[16] else x.contiguous()
    nthreads = torch.get_num_threads()
    ones = int(lib().ss_spike_conv_pack(ptr(xc), ptr(g), ptr(bits), nthreads)) if x.numel() else 0
    if y.numel() == 0:
        return y, bits, torch.tensor(ones)
    if 0 <= ones <= DENSE_ABOVE * x.numel():
        b = bias.detach().contiguous() if bias is not None else None
        wt = _packed_weight(weight, groups)  # named: the kernel reads it after ptr() returns
        lib().ss_spike_conv_forward(ptr(bits), ptr(g), ptr(wt), ptr(b), ptr(y), nthreads)
    else:
        y.copy_(nn.functional.conv2d(x, weight.detach(), None if bias is None else bias.detach(), stride, padding,
                                     dilation, groups))
    return y, bits, torch.tensor(ones)


@spike_conv2d_forward.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int], dilation: list[int],
      groups: int) -> tuple[Tensor, Tensor, Tensor]:
    geom = _check("spike_conv2d", x, weight, bias, stride, padding, dilation, groups)
    return (_out_like(geom, x), x.new_empty(_bits_shape(geom), dtype=torch.int64),
            x.new_empty((), dtype=torch.int64))


@torch.library.custom_op("softspike::spike_conv2d_wgrad", mutates_args=(), device_types="cpu")
def spike_conv2d_wgrad(gy: Tensor, bits: Tensor, ones: Tensor, x: Tensor | None, x_shape: list[int],
                       weight_shape: list[int], stride: list[int], padding: list[int], dilation: list[int],
                       groups: int) -> Tensor:
    """dL/dW [n_out, C/G, KH, KW] of `spike_conv2d` for dL/dY = gy: summed over the set bits when X was
    binary and sparse, else dense (with x if given, else X unpacked from the bits)."""
    op = "spike_conv2d_wgrad"
    check_tensor(op, "gy", gy, min_dim=4)
    check_tensor(op, "bits", bits, dtype=torch.int64, min_dim=2)
    geom = _geometry(op, x_shape, weight_shape, stride, padding, dilation, groups, False)
    N, n_out, OH, OW = geom[0], geom[4], geom[14], geom[15]
    if gy.shape != (N, n_out, OH, OW) or bits.shape != _bits_shape(geom):
        raise KernelInputError(f"softspike::{op}: gy {list(gy.shape)} or bits {list(bits.shape)} do not fit x "
                               f"{x_shape} and weight {weight_shape}")
    n_ones = int(ones)
    numel = N * geom[1] * geom[2] * geom[3]
    if n_ones < 0 or n_ones > DENSE_ABOVE * numel:
        if x is None:
            if n_ones < 0:
                raise KernelInputError(f"softspike::{op}: X was not binary, so x must be given")
            x = _unpack(bits, geom)
        return conv_grad.conv2d_weight(x, weight_shape, gy, stride, padding, dilation, groups)
    gw = torch.empty(weight_shape, dtype=gy.dtype)
    if numel == 0 or gy.numel() == 0:
        return gw.zero_()
    Og = n_out // groups
    packed = torch.empty((groups, weight_shape[2], weight_shape[3], weight_shape[1], Og), dtype=gy.dtype)
    g = torch.tensor(geom, dtype=torch.int64)
    gy_nhwc = gy.permute(0, 2, 3, 1).contiguous()  # a view when gy is channels-last already
    lib().ss_spike_conv_wgrad(ptr(bits), ptr(g), ptr(gy_nhwc), ptr(packed), torch.get_num_threads())
    return gw.copy_(packed.permute(0, 4, 3, 1, 2).reshape(weight_shape))


@spike_conv2d_wgrad.register_fake
def _(gy: Tensor, bits: Tensor, ones: Tensor, x: Tensor | None, x_shape: list[int], weight_shape: list[int],
      stride: list[int], padding: list[int], dilation: list[int], groups: int) -> Tensor:
    return gy.new_empty(weight_shape)


def _unpack(bits: Tensor, geom: list[int]) -> Tensor:
    """X [N, C, H, W] (float 0/1, channels-last in memory) from its bits [N, H, W, words]."""
    C = geom[1]
    shifts = torch.arange(64, dtype=torch.int64)
    flat = ((bits.unsqueeze(-1) >> shifts) & 1).flatten(-2)[..., :C].to(torch.float32)
    return flat.permute(0, 3, 1, 2)


def _concrete(t: Tensor) -> bool:
    """Whether t holds real data (not a tracer's stand-in under torch.compile or export)."""
    return type(t) is Tensor and not torch.compiler.is_compiling()


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
    x, weight, bias, stride, padding, dilation, groups = inputs
    _, bits, ones = output
    keep_x = not _concrete(ones) or int(ones) < 0  # binary input in eager: the bits suffice
    ctx.save_for_backward(weight, bits, ones, x if keep_x else None)
    ctx.conf = (list(x.shape), list(stride), list(padding), list(dilation), groups)
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(bits, ones)


def _input_grad_weight(weight: Tensor) -> Tensor:
    """The weight as the dense input gradient reads it fastest: channels-last. mkldnn then runs the
    transposed convolution channels-last throughout, about half the time of a contiguous weight with
    channels-last dL/dY (conv 256->256, 3x3, 16x16, N=64, one thread: 122 against 261 ms thread
    time, under load); the copy is of the weight only."""
    return weight.contiguous(memory_format=torch.channels_last)


def _backward(ctx: Any, gy: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    weight, bits, ones, x = ctx.saved_tensors
    x_shape, stride, padding, dilation, groups = ctx.conf
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = conv_grad.conv2d_input(x_shape, _input_grad_weight(weight), gy, stride, padding, dilation, groups)
    if ctx.needs_input_grad[1]:
        with torch.no_grad():
            gw = spike_conv2d_wgrad(gy, bits, ones, x, x_shape, list(weight.shape), stride, padding, dilation, groups)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = gy.sum((0, 2, 3))
    return gx, gw, gb, None, None, None, None


spike_conv2d_forward.register_autograd(_backward, setup_context=_setup)


class _SpikeConv2d(torch.autograd.Function):
    """The op with its gradient in the `setup_context` style, which torch.func accepts (see linear.py)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],  # type: ignore[override]
                dilation: list[int], groups: int) -> tuple[Tensor, Tensor, Tensor]:
        return spike_conv2d_forward(x, weight, bias, stride, padding, dilation, groups)  # type: ignore[no-any-return]

    setup_context = staticmethod(_setup)  # type: ignore[assignment]
    backward = staticmethod(_backward)  # type: ignore[assignment]


def _pair(v: int | tuple[int, ...]) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v)


def spike_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, ...] = 1,
                 padding: int | tuple[int, ...] = 0, dilation: int | tuple[int, ...] = 1, groups: int = 1) -> Tensor:
    """`nn.functional.conv2d` for spike input (any input works; binary input runs sparse)."""
    if (
        x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() != 4
        or (bias is not None and bias.dtype != torch.float32) or isinstance(padding, str) or not native.available()
    ):
        return nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)  # type: ignore[arg-type]
    out: Tensor = _SpikeConv2d.apply(x, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups)[0]
    return out


class SpikeConv2d(nn.Conv2d):
    """`nn.Conv2d` whose input is spikes: same parameters, same results to rounding, less work."""

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return spike_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,  # type: ignore[arg-type]
                            self.groups)


class ChannelsLastConv2d(nn.Conv2d):
    """`nn.Conv2d` for dense input (an image, analog values) that reads its weight channels-last, so
    its output is channels-last like `SpikeConv2d`'s: the neuron after it then fires channels-last
    spikes, which the next spike-input conv packs and whose input gradient (channels-last) reaches
    the neuron's backward without a layout copy. The parameter keeps its own layout (the copy of the
    weight is made per call and its gradient flows back to it); mkldnn computes the same values
    (equal to `nn.Conv2d`'s in tests/test_spike_conv.py)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros" or x.dim() != 4:
            return super().forward(x)
        weight = self.weight.contiguous(memory_format=torch.channels_last)
        return nn.functional.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation,  # type: ignore[arg-type]
                                    self.groups)
