"""nn.Modules over sparsebox.torch.functional: locally connected layers, convolutions, max pooling."""
import math

import torch
from torch import nn

from .. import _lib as L
from . import functional as F

__all__ = ["LocallyConnected1d", "LocallyConnected2d", "LocallyConnected3d", "Conv1d", "Conv2d", "Conv3d",
           "MaxPool1d", "MaxPool2d", "MaxPool3d"]


def _dtype(dtype):
    dt = torch.get_default_dtype() if dtype is None else dtype
    if dt not in (torch.float32, torch.float64):
        raise TypeError("dtype: expected torch.float32 or torch.float64, got %s" % (dt,))
    return dt


def _positive(v, name):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("%s: expected a positive integer, got %r" % (name, v))
    return v


class _LocallyConnected(nn.Module):
    _ndim = None

    def __init__(self, in_channels, out_channels, in_shape, kernel_size, stride=1, bias=True, dtype=None):
        super().__init__()
        n = self._ndim
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.in_shape = F._tuple(in_shape, n, "in_shape")
        self.kernel_size = F._tuple(kernel_size, n, "kernel_size")
        self.stride = F._tuple(stride, n, "stride")
        geo = L.conv_shape(n, in_channels, self.in_shape, self.kernel_size, self.stride, "valid")
        self.out_shape = geo.spatial_out
        dt = _dtype(dtype)
        self.weight = nn.Parameter(torch.empty((in_channels, out_channels) + self.out_shape + self.kernel_size,
                                               dtype=dt))
        if bias:
            self.bias = nn.Parameter(torch.empty((out_channels,) + self.out_shape, dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # each output unit sees in_channels * prod(kernel_size) inputs: torch's default bound for a
        # layer of that fan-in (kaiming_uniform with a = sqrt(5) gives 1 / sqrt(fan_in))
        bound = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if tuple(x.shape[-self._ndim:]) != self.in_shape:
            raise ValueError("input: spatial shape %r, the layer was made for %r"
                             % (tuple(x.shape[-self._ndim:]), self.in_shape))
        return F.locally_connected(x, self.weight, self.bias, self.stride)

    def extra_repr(self):
        return "%d, %d, in_shape=%r, kernel_size=%r, stride=%r, out_shape=%r, bias=%s" % (
            self.in_channels, self.out_channels, self.in_shape, self.kernel_size, self.stride, self.out_shape,
            self.bias is not None)


class LocallyConnected1d(_LocallyConnected):
    """Local connections over (batch, in_channels, length): a weight per output position and tap."""
    _ndim = 1


class LocallyConnected2d(_LocallyConnected):
    """Local connections over (batch, in_channels, h, w): weight (in_channels, out_channels, out_h,
    out_w, kh, kw), bias (out_channels, out_h, out_w); out = ceil((in - k + 1) / stride)."""
    _ndim = 2


class LocallyConnected3d(_LocallyConnected):
    """Local connections over (batch, in_channels, d, h, w)."""
    _ndim = 3


class _Conv(nn.Module):
    _ndim = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, mode="valid", bias=True, dtype=None):
        super().__init__()
        n = self._ndim
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.kernel_size = F._tuple(kernel_size, n, "kernel_size")
        self.stride = F._tuple(stride, n, "stride")
        L.mode_code(mode)
        self.mode = mode
        dt = _dtype(dtype)
        self.weight = nn.Parameter(torch.empty((out_channels, in_channels) + self.kernel_size, dtype=dt))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # torch's own default for its convolutions
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.conv(x, self.weight, self.bias, self.stride, self.mode)

    def extra_repr(self):
        return "%d, %d, kernel_size=%r, stride=%r, mode=%r, bias=%s" % (
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.mode, self.bias is not None)


class Conv1d(_Conv):
    """torch.nn.Conv1d's layout; mode 'valid' (padding 0) or 'full' (padding kernel_size - 1)."""
    _ndim = 1


class Conv2d(_Conv):
    """torch.nn.Conv2d's layout (weight (out, in, kh, kw)); mode 'valid' (padding 0) or 'full' (padding
    kernel_size - 1)."""
    _ndim = 2


class Conv3d(_Conv):
    """torch.nn.Conv3d's layout; mode 'valid' or 'full'."""
    _ndim = 3


class _MaxPool(nn.Module):
    _ndim = None

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = F._tuple(kernel_size, self._ndim, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._tuple(stride, self._ndim, "stride")

    def forward(self, x):
        return F.max_pool(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return "kernel_size=%r, stride=%r" % (self.kernel_size, self.stride)


class MaxPool1d(_MaxPool):
    _ndim = 1


class MaxPool2d(_MaxPool):
    """Max pooling, stride defaulting to the kernel: torch's forward; in the backward pass every tied
    maximum receives the gradient."""
    _ndim = 2


class MaxPool3d(_MaxPool):
    _ndim = 3
