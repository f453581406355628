"""Functional forms of the torch layers, each an autograd Function over a library plan.

    locally_connected(x, weight, bias=None, stride=1)   weight (in, out, *out_shape, *kernel_size)
    conv(x, weight, bias=None, stride=1, mode='valid')  weight (out, in, *kernel_size), as torch's
    max_pool(x, kernel_size, stride=None)               stride defaults to kernel_size

x is (batch, channels, *spatial) or, unbatched, (channels, *spatial). Tensors cross to the library
without copies when contiguous (the output is the library's array, seen by torch without a copy).
"""
import math

import numpy as np
import torch

from .. import _lib as L

__all__ = ["locally_connected", "conv", "max_pool"]

_DTYPES = (torch.float32, torch.float64)


def _check(t, name, dtype=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError("%s: expected a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.device.type != "cpu":
        raise TypeError("%s: sparsebox runs on the CPU; got a tensor on %s (move it with .cpu())" % (name, t.device))
    if t.dtype not in _DTYPES:
        raise TypeError("%s: expected a float32 or float64 tensor, got %s" % (name, t.dtype))
    if t.layout != torch.strided:
        raise TypeError("%s: expected a dense (strided) tensor, got layout %s" % (name, t.layout))
    if dtype is not None and t.dtype != dtype:
        raise TypeError("%s: dtype %s differs from the input's %s" % (name, t.dtype, dtype))


def _np(t):
    """A numpy view of a tensor's memory (one copy when it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _tensor(a, shape):
    return torch.from_numpy(a).view(shape)


def _tuple(v, n, name):
    vals = (v,) * n if isinstance(v, int) else tuple(v)
    if len(vals) != n or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in vals):
        raise ValueError("%s: expected a positive integer or %d of them, got %r" % (name, n, v))
    return vals


def _batched(x, ndim, name="input"):
    if x.dim() == ndim + 2:
        return x, False
    if x.dim() == ndim + 1:
        return x.unsqueeze(0), True
    raise ValueError("%s: expected (batch, channels, *%d spatial) or (channels, *%d spatial), got shape %s"
                     % (name, ndim, ndim, tuple(x.shape)))


# --- autograd Functions ---------------------------------------------------------------------------------------------
class _LayerFunction(torch.autograd.Function):
    """(x, weight, bias) -> output through a conv or local plan."""

    @staticmethod
    def forward(ctx, x, weight, bias, kind, shape, nkern):
        dt = x.dtype
        plan = L.plan(kind, shape, nkern, np.dtype(str(dt).replace("torch.", "")))
        batch = x.shape[0]
        xs = _np(x).reshape(batch, shape.in_size)
        ws = _np(weight).reshape(-1) if kind == "local" else _np(weight).reshape(nkern, -1)
        bs = _np(bias).reshape(-1) if bias is not None else None
        fwd = L.lib.sbx_conv_forward if kind == "conv" else L.lib.sbx_local_forward
        (out,) = L.call_plan(fwd, plan, [xs, ws, bs], [True])
        ctx.plan, ctx.kind, ctx.nkern, ctx.has_bias = plan, kind, nkern, bias is not None
        ctx.save_for_backward(x, weight)
        return _tensor(out, (batch, nkern) + shape.spatial_out)

    @staticmethod
    def backward(ctx, gout):
        x, weight = ctx.saved_tensors
        plan, nkern = ctx.plan, ctx.nkern
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.has_bias
        if not (need_x or need_w or need_b):
            return None, None, None, None, None, None
        batch = x.shape[0]
        xs = _np(x).reshape(batch, plan.shape.in_size)
        ws = _np(weight).reshape(-1) if ctx.kind == "local" else _np(weight).reshape(nkern, -1)
        gs = _np(gout).reshape(batch, -1)
        bwd = L.lib.sbx_conv_backward if ctx.kind == "conv" else L.lib.sbx_local_backward
        gx, gw, gb = L.call_plan(bwd, plan, [xs, ws, gs], [bool(need_x), bool(need_w), bool(need_b)])
        gx = _tensor(gx, x.shape) if gx is not None else None
        gw = _tensor(gw, weight.shape) if gw is not None else None
        if gb is not None:
            gb = torch.from_numpy(gb)
            gb = gb.view(nkern) if ctx.kind == "conv" else gb.view((nkern,) + plan.shape.spatial_out)
        return gx, gw, gb, None, None, None


class _PoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shape):
        dt = np.dtype(str(x.dtype).replace("torch.", ""))
        plan = L.plan("pool", shape, 0, dt)
        batch = x.shape[0]
        xs = _np(x).reshape(batch, shape.in_size)
        ctx.plan = plan
        if shape.kernel_size <= 64:  # tap masks: the backward pass is a scatter, not a second search
            out, mask = L.call_plan(L.lib.sbx_pool_forward_mask, plan, [xs], [True, True])
            ctx.mask = mask
            ctx.save_for_backward(x)
        else:
            (out,) = L.call_plan(L.lib.sbx_pool_forward, plan, [xs], [True])
            ctx.mask = None
            ctx.save_for_backward(x)
        return _tensor(out, (batch, shape.channels) + shape.spatial_out)

    @staticmethod
    def backward(ctx, gout):
        if not ctx.needs_input_grad[0]:
            return None, None
        (x,) = ctx.saved_tensors
        plan = ctx.plan
        batch = x.shape[0]
        gs = _np(gout).reshape(batch, -1)
        if ctx.mask is not None:
            (gx,) = L.call_plan(L.lib.sbx_pool_backward_mask, plan, [ctx.mask, gs], [True])
        else:
            xs = _np(x).reshape(batch, plan.shape.in_size)
            (gx,) = L.call_plan(L.lib.sbx_pool_backward, plan, [xs, gs], [True])
        return _tensor(gx, x.shape), None


# --- the functional forms ---------------------------------------------------------------------------------------------
def locally_connected(x, weight, bias=None, stride=1):
    """Local connections (unshared weights), valid windows: weight (in_channels, out_channels, *out_shape,
    *kernel_size) (the original's kmap order), bias (out_channels, *out_shape) or None; x (batch,
    in_channels, *in_shape) -> (batch, out_channels, *out_shape), out = ceil((in - k + 1) / stride)."""
    _check(x, "input")
    _check(weight, "weight", x.dtype)
    if weight.dim() < 4 or weight.dim() % 2:
        raise ValueError("weight: expected (in_channels, out_channels, *out_shape, *kernel_size), got shape %s"
                         % (tuple(weight.shape),))
    ndim = (weight.dim() - 2) // 2
    x, unbatched = _batched(x, ndim)
    cin, nkern = weight.shape[0], weight.shape[1]
    out_shape, kernel = tuple(weight.shape[2:2 + ndim]), tuple(weight.shape[2 + ndim:])
    if x.shape[1] != cin:
        raise ValueError("input has %d channels, weight %d" % (x.shape[1], cin))
    shape = L.conv_shape(ndim, cin, tuple(x.shape[2:]), kernel, _tuple(stride, ndim, "stride"), "valid")
    if shape.spatial_out != out_shape:
        raise ValueError("weight's out_shape %r does not match the input %r with kernel %r and stride %r (out %r)"
                         % (out_shape, tuple(x.shape[2:]), kernel, stride, shape.spatial_out))
    if bias is not None:
        _check(bias, "bias", x.dtype)
        if tuple(bias.shape) != (nkern,) + out_shape:
            raise ValueError("bias: expected shape %r, got %r" % ((nkern,) + out_shape, tuple(bias.shape)))
    y = _LayerFunction.apply(x, weight, bias, "local", shape, nkern)
    return y.squeeze(0) if unbatched else y


def conv(x, weight, bias=None, stride=1, mode="valid"):
    """Convolution (correlation, as torch's), weight (out_channels, in_channels, *kernel_size), bias
    (out_channels,) or None: equal to torch.nn.functional.conv{1,2,3}d with padding 0 (mode 'valid') or
    kernel_size - 1 (mode 'full')."""
    _check(x, "input")
    _check(weight, "weight", x.dtype)
    if not 3 <= weight.dim() <= 2 + L.MAX_NDIM:
        raise ValueError("weight: expected (out_channels, in_channels, *kernel_size), got shape %s"
                         % (tuple(weight.shape),))
    ndim = weight.dim() - 2
    x, unbatched = _batched(x, ndim)
    nkern, cin = weight.shape[0], weight.shape[1]
    if x.shape[1] != cin:
        raise ValueError("input has %d channels, weight %d" % (x.shape[1], cin))
    shape = L.conv_shape(ndim, cin, tuple(x.shape[2:]), tuple(weight.shape[2:]), _tuple(stride, ndim, "stride"), mode)
    if bias is not None:
        _check(bias, "bias", x.dtype)
        if tuple(bias.shape) != (nkern,):
            raise ValueError("bias: expected shape (%d,), got %r" % (nkern, tuple(bias.shape)))
    y = _LayerFunction.apply(x, weight, bias, "conv", shape, nkern)
    return y.squeeze(0) if unbatched else y


def max_pool(x, kernel_size, stride=None):
    """Max pooling over windows kernel_size (an int per spatial axis of x, or a tuple whose length gives
    the number of spatial axes), stride defaulting to kernel_size, remainders dropped: torch's forward.
    In the backward pass every tied maximum receives the gradient (the original's gradient of max; torch
    gives it to one), which equals torch's wherever a window has one maximum."""
    _check(x, "input")
    ndim = len(kernel_size) if not isinstance(kernel_size, int) else x.dim() - 2
    if not 1 <= ndim <= 3 and isinstance(kernel_size, int):
        raise ValueError("input: expected (batch, channels, *spatial), got shape %s" % (tuple(x.shape),))
    kernel = _tuple(kernel_size, ndim, "kernel_size")
    step = kernel if stride is None else _tuple(stride, ndim, "stride")
    x, unbatched = _batched(x, ndim)
    shape = L.conv_shape(ndim, x.shape[1], tuple(x.shape[2:]), kernel, step, "valid")
    y = _PoolFunction.apply(x, shape)
    return y.squeeze(0) if unbatched else y


def _fan_in_bound(cin, kernel):
    return 1.0 / math.sqrt(cin * math.prod(kernel))
