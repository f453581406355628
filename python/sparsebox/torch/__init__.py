"""PyTorch layers over the library's plans: autograd Functions and nn.Modules for local connections
(unshared weights), convolution (valid and full) and max pooling, in 1 to 3 spatial dimensions.

    import sparsebox.torch as sbt
    layer = sbt.LocallyConnected2d(1, 8, (28, 28), 5)      # weight (1, 8, 24, 24, 5, 5)
    y = layer(x)                                           # x (batch, 1, 28, 28) -> (batch, 8, 24, 24)

float32 and float64 CPU tensors only (anything else raises TypeError); inputs of any strides are made
contiguous once. Imported only when asked for: `import sparsebox` does not import torch.
"""
from . import functional
from .functional import conv, locally_connected, max_pool
from .modules import (Conv1d, Conv2d, Conv3d, LocallyConnected1d, LocallyConnected2d, LocallyConnected3d, MaxPool1d,
                      MaxPool2d, MaxPool3d)

__all__ = ["functional", "conv", "locally_connected", "max_pool", "LocallyConnected1d", "LocallyConnected2d",
           "LocallyConnected3d", "Conv1d", "Conv2d", "Conv3d", "MaxPool1d", "MaxPool2d", "MaxPool3d"]
