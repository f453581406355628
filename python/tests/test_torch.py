"""sparsebox.torch against torch's own functions, a reference local connection, and gradcheck."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

import sparsebox.torch as sbt  # noqa: E402
from sparsebox.torch import functional as F  # noqa: E402

TORCH_CONV = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}
TORCH_POOL = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
CONV = {1: sbt.Conv1d, 2: sbt.Conv2d, 3: sbt.Conv3d}
LOCAL = {1: sbt.LocallyConnected1d, 2: sbt.LocallyConnected2d, 3: sbt.LocallyConnected3d}
SPATIAL = {1: (9,), 2: (7, 8), 3: (5, 6, 4)}
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
STRIDE = {1: (2,), 2: (2, 1), 3: (1, 2, 2)}


def local_reference(x, weight, bias, stride):
    """Local connections written with numpy windows: out[b, n, o] = sum_c,l x[b, c, o * s + l] w[c, n, o, l]."""
    ndim = (weight.dim() - 2) // 2
    k = tuple(weight.shape[2 + ndim:])
    xs = x.detach().numpy()
    win = np.lib.stride_tricks.sliding_window_view(xs, k, axis=tuple(range(2, 2 + ndim)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    letters_o, letters_k = "ijk"[:ndim], "pqr"[:ndim]
    y = np.einsum("bc%s%s,cn%s%s->bn%s" % (letters_o, letters_k, letters_o, letters_k, letters_o), win,
                  weight.detach().numpy())
    if bias is not None:
        y = y + bias.detach().numpy()
    return torch.from_numpy(np.ascontiguousarray(y))


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("mode", ["valid", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_equals_torch(ndim, mode, dtype):
    torch.manual_seed(ndim)
    m = CONV[ndim](3, 4, KERNEL[ndim], stride=STRIDE[ndim], mode=mode, dtype=dtype)
    x = torch.randn((2, 3) + SPATIAL[ndim], dtype=dtype)
    pad = 0 if mode == "valid" else tuple(k - 1 for k in KERNEL[ndim])
    ref = TORCH_CONV[ndim](x, m.weight, m.bias, stride=STRIDE[ndim], padding=pad)
    y = m(x)
    assert y.dtype == dtype and y.shape == ref.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(y, ref, rtol=tol, atol=tol)
    # gradients against torch's
    g = torch.randn_like(ref)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    wa = m.weight.detach().clone().requires_grad_(True)
    wb = m.weight.detach().clone().requires_grad_(True)
    ba = m.bias.detach().clone().requires_grad_(True)
    bb = m.bias.detach().clone().requires_grad_(True)
    (F.conv(xa, wa, ba, STRIDE[ndim], mode) * g).sum().backward()
    (TORCH_CONV[ndim](xb, wb, bb, stride=STRIDE[ndim], padding=pad) * g).sum().backward()
    for a, b in [(xa.grad, xb.grad), (wa.grad, wb.grad), (ba.grad, bb.grad)]:
        assert torch.allclose(a, b, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("mode", ["valid", "full"])
def test_conv_gradcheck(ndim, mode):
    torch.manual_seed(10 + ndim)
    spatial = {1: (6,), 2: (5, 4), 3: (3, 4, 3)}[ndim]
    x = torch.randn((2, 2) + spatial, dtype=torch.float64, requires_grad=True)
    w = torch.randn((3, 2) + KERNEL[ndim], dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: F.conv(x, w, b, STRIDE[ndim], mode), (x, w, b))


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_locally_connected_equals_reference(ndim, dtype):
    torch.manual_seed(20 + ndim)
    m = LOCAL[ndim](2, 3, SPATIAL[ndim], KERNEL[ndim], stride=STRIDE[ndim], dtype=dtype)
    out = tuple(-(-(i - k + 1) // s) for i, k, s in zip(SPATIAL[ndim], KERNEL[ndim], STRIDE[ndim]))
    assert m.out_shape == out
    assert tuple(m.weight.shape) == (2, 3) + out + KERNEL[ndim] and tuple(m.bias.shape) == (3,) + out
    x = torch.randn((4, 2) + SPATIAL[ndim], dtype=dtype)
    y = m(x)
    ref = local_reference(x, m.weight, m.bias, STRIDE[ndim])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert y.shape == (4, 3) + out and torch.allclose(y, ref.to(dtype), rtol=tol, atol=tol)


def test_locally_connected_2d_equals_unfold_einsum():
    """What PyTorch users write today: unfold, then one weight per position."""
    torch.manual_seed(3)
    m = sbt.LocallyConnected2d(2, 5, (8, 9), (3, 3), stride=2, dtype=torch.float64)
    x = torch.randn(3, 2, 8, 9, dtype=torch.float64)
    u = TF.unfold(x, (3, 3), stride=2).view(3, 2, 9, -1)  # (batch, c, taps, positions)
    w = m.weight.reshape(2, 5, -1, 9)  # (c, n, positions, taps)
    ref = torch.einsum("bclp,cnpl->bnp", u, w).view(3, 5, *m.out_shape) + m.bias
    assert torch.allclose(m(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_locally_connected_gradcheck(ndim):
    torch.manual_seed(30 + ndim)
    spatial = {1: (7,), 2: (5, 4), 3: (3, 4, 3)}[ndim]
    m = LOCAL[ndim](2, 2, spatial, KERNEL[ndim], stride=STRIDE[ndim], dtype=torch.float64)
    x = torch.randn((2, 2) + spatial, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: F.locally_connected(x, w, b, STRIDE[ndim]),
                                    (x, m.weight, m.bias))


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_equals_torch(kernel, stride, dtype):
    torch.manual_seed(4)
    x = torch.randn(3, 2, 9, 10, dtype=dtype)
    m = sbt.MaxPool2d(kernel, stride)
    ref = TF.max_pool2d(x, kernel, stride)
    assert torch.equal(m(x), ref)
    # no ties in random data: the same gradient as torch's
    g = torch.randn_like(ref)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (m(xa) * g).sum().backward()
    (TF.max_pool2d(xb, kernel, stride) * g).sum().backward()
    assert torch.allclose(xa.grad, xb.grad)


@pytest.mark.parametrize("ndim", [1, 3])
def test_max_pool_other_dimensions(ndim):
    torch.manual_seed(5)
    x = torch.randn((2, 3) + SPATIAL[ndim], dtype=torch.float64)
    assert torch.equal(F.max_pool(x, (2,) * ndim), TORCH_POOL[ndim](x, 2))


def test_max_pool_ties_all_receive_the_gradient():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    sbt.MaxPool2d(2)(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(1, 1, 4, 4, dtype=torch.float64))  # torch gives 1 per window


def test_max_pool_gradcheck_and_large_windows():
    torch.manual_seed(6)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: F.max_pool(x, (2, 3), (2, 2)), (x,))
    big = torch.randn(1, 1, 9, 9, dtype=torch.float64, requires_grad=True)  # 81 taps: no mask, a second search
    assert torch.equal(F.max_pool(big, 9), TF.max_pool2d(big, 9))
    assert torch.autograd.gradcheck(lambda x: F.max_pool(x, 9), (big,))


def test_any_strides_and_unbatched_inputs():
    torch.manual_seed(7)
    m = sbt.Conv2d(3, 2, 3, dtype=torch.float64)
    x = torch.randn(2, 7, 8, 3, dtype=torch.float64).permute(0, 3, 1, 2)  # channels last in memory
    assert not x.is_contiguous()
    assert torch.allclose(m(x), TF.conv2d(x, m.weight, m.bias), atol=1e-12)
    assert torch.allclose(m(x[0]), TF.conv2d(x[:1], m.weight, m.bias)[0], atol=1e-12)
    assert torch.equal(sbt.MaxPool2d(2)(x[0]), TF.max_pool2d(x[0], 2))


def test_clear_errors():
    m = sbt.Conv2d(1, 1, 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        m(torch.zeros(1, 1, 4, 4, dtype=torch.float16))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.max_pool(torch.zeros(1, 1, 4, 4, dtype=torch.int64), 2)
    with pytest.raises(TypeError, match="CPU"):
        F.max_pool(torch.zeros(1, 1, 4, 4, device="meta"), 2)
    with pytest.raises(TypeError, match="dtype"):
        F.conv(torch.zeros(1, 1, 4, 4, dtype=torch.float64), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        m(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError):
        m(torch.zeros(1, 1, 1, 4))  # valid mode: kernel larger than the image
    with pytest.raises(TypeError):
        sbt.Conv2d(1, 1, 2, dtype=torch.float16)
    with pytest.raises(ValueError, match="mode"):
        sbt.Conv2d(1, 1, 2, mode="same")


def test_modules_train():
    torch.manual_seed(8)
    net = torch.nn.Sequential(sbt.Conv2d(1, 4, 3, dtype=torch.float64), torch.nn.ReLU(), sbt.MaxPool2d(2),
                              sbt.LocallyConnected2d(4, 2, (3, 3), 2, dtype=torch.float64), torch.nn.Flatten())
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    target = torch.randn(16, 8, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((net(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert "kernel_size=(3, 3)" in repr(net[0]) and "out_shape=(2, 2)" in repr(net[3])
