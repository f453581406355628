#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers (tests/fuzz/corpus/<target>/): a few small inputs each, well
formed ones that reach deep into the code under test and a few damaged ones. The byte layouts follow
the fuzz targets' readers (fuzz_*.c). Deterministic: run it again and the files are the same.
    python3 tests/fuzz/make_corpus.py"""
import gzip
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def npy(descr, shape, body, fortran=False, version=1):
    shape_text = "(" + "".join("%d," % s for s in shape) + ")" if len(shape) == 1 else \
        "(" + ", ".join(str(s) for s in shape) + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)
    lenbytes = 2 if version == 1 else 4
    total = 6 + 2 + lenbytes + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode() + body


def corpus_npy():
    write("npy", "f8_vector", npy("<f8", (3,), struct.pack("<3d", 1.5, -2.0, float("nan"))))
    write("npy", "i1_fortran", npy("|i1", (2, 3), bytes([1, 2, 3, 4, 5, 0xFF]), fortran=True))
    write("npy", "f4_big_scalar", npy(">f4", (), struct.pack(">f", 3.25)))
    write("npy", "bool_v2", npy("|b1", (2, 2), bytes([0, 1, 1, 0]), version=2))
    write("npy", "u2_empty_v3", npy("<u2", (2, 0), b"", version=3))
    write("npy", "i8_truncated", npy("<i8", (4,), struct.pack("<3q", 1, 2, 3)))


def corpus_mtx():
    # First byte: bit 0 CSC, bit 1 also the dense reader.
    write("mtx", "real_general", b"\x02%%MatrixMarket matrix coordinate real general\n% a comment\n3 4 4\n"
          b"1 1 1.5\n3 2 -2e-3\n2 4 7\n1 1 0.25\n")
    write("mtx", "integer_symmetric", b"\x03%%MatrixMarket matrix coordinate integer symmetric\n3 3 3\n1 1 4\n"
          b"3 1 -9223372036854775807\n3 3 2\n")
    write("mtx", "pattern_skew", b"\x01%%MatrixMarket matrix coordinate pattern skew-symmetric\n4 4 2\n2 1\n4 3\n")
    write("mtx", "array_real", b"\x02%%MatrixMarket matrix array real general\n2 3\n1\n0\n-3.5\n0\ninf\nnan\n")
    write("mtx", "array_integer_skew", b"\x00%%MatrixMarket matrix array integer skew-symmetric\n3 3\n5\n-6\n7\n")
    write("mtx", "complex", b"\x00%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 2\n")


def idx_file(dims, body):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body


def corpus_idx():
    # First byte: dimensions - 1 in bits 0-2; bit 7: the rest is written gzipped by the fuzzer.
    write("idx", "labels_1d", bytes([0]) + idx_file([5], bytes([0, 9, 3, 3, 1])))
    write("idx", "images_3d", bytes([2]) + idx_file([2, 2, 3], bytes(range(12))))
    write("idx", "images_3d_gzipped", bytes([0x82]) + idx_file([1, 3, 2], bytes(range(6))))
    write("idx", "gzip_file", bytes([1]) + gzip.compress(idx_file([2, 2], bytes([7, 8, 9, 10])), mtime=0))
    write("idx", "short_body", bytes([1]) + idx_file([3, 3], bytes(5)))


def corpus_sparse():
    # flags, dtype, nrows, ncols, indptr steps, 64 indices, 512 value bytes (cut short: zeros follow).
    rng = random.Random(15)
    # CSR float64 3 x 4, rows of 2, 1 and 2 entries with sorted indices.
    write("sparse", "csr_f64", bytes([0, 1, 3, 4, 2, 1, 2, 0, 2, 1, 0, 3]) + bytes([3, 4, 1, 2, 0]))
    # CSC int32 4 x 2 (2 columns) with an unsorted, duplicated column.
    write("sparse", "csc_i32_dups", bytes([1, 4, 4, 2, 3, 1, 2, 2, 1, 3, 0]) + bytes([1, 2, 3, 4]))
    # A broken indptr (flag 4: steps may go down) and raw values (flag 64).
    write("sparse", "bad_indptr_raw", bytes([4 | 64, 0, 5, 5, 3, 1, 0, 4, 6]) + bytes(rng.randrange(256) for _ in range(40)))
    write("sparse", "bool_out_of_range", bytes([32, 10, 2, 6, 2, 2, 5, 0, 7, 1]))
    write("sparse", "random", bytes(rng.randrange(256) for _ in range(96)))


def corpus_conv():
    # flags, ndim, channels, 9 x (in, kernel, stride), mode, [tampering], what, its parameters.
    def shape(ndim, channels, ins, kernels, strides, mode, flags=0):
        b = [flags, ndim, channels + 1]
        for d in range(9):
            b += [(ins[d] if d < len(ins) else 1) + 1, (kernels[d] if d < len(kernels) else 1) + 1,
                  (strides[d] if d < len(strides) else 1) + 1]
        return bytes(b + [mode])
    s2 = shape(2, 1, [4, 4], [2, 2], [1, 1], 0)
    write("conv", "indices_ws1", s2 + bytes([0, 2, 2, 0, 1]))
    write("conv", "indices_ws0_csc_full", shape(2, 2, [3, 2], [2, 2], [1, 2], 1) + bytes([0, 1, 3, 1, 1]))
    # Layers: dtype (1 float64, 0 float32), nkern + 1, batch, bias flag, then values.
    write("conv", "conv_f64", s2 + bytes([1, 1, 3, 2, 1]) + bytes(range(60)))
    write("conv", "local_f32_full_1d", shape(1, 2, [5], [3], [2], 1) + bytes([2, 0, 2, 1, 1]) + bytes(range(200, 250)))
    write("conv", "pool_3d", shape(3, 1, [3, 3, 2], [2, 2, 1], [1, 2, 1], 0) + bytes([3, 1, 2]) + bytes(range(40)))
    write("conv", "tampered", shape(2, 1, [4, 4], [2, 2], [1, 1], 0, flags=2) + bytes([1, 2]))


def corpus_random():
    # seed (8), stream (4), which (0 scalar, 1 fill, 2 sparse), then the sampler's bytes.
    head = struct.pack("<QI", 0x1234567890ABCDEF, 7)
    write("random", "binomial", head + bytes([0]) + bytes(8) + bytes([0, 30, 100]))
    write("random", "poisson_large", head + bytes([0]) + bytes(8) + bytes([1, 150, 1]))
    write("random", "multinomial", head + bytes([0]) + bytes(8) + bytes([2, 12, 4, 1] + [0, 50, 0, 80, 1, 0, 0, 90] + [1]))
    write("random", "fill_poisson_u8", head + bytes([1, 6, 3, 4, 10, 0, 1, 5, 120, 0, 0]))
    write("random", "sparse_binomial_csc", head + bytes([2, 0, 3, 30, 20, 17, 1, 5]))
    write("random", "sparse_poisson", head + bytes([2, 1, 0, 4, 5] + [1, 20, 0, 1, 100, 1, 5, 0] * 3 + [1]))
    write("random", "sparse_multinomial", head + bytes([2, 2, 7, 3, 3] + [1, 60, 1, 60, 0] * 3 + [0, 1, 5, 6, 7]))
    write("random", "nan_parameter", head + bytes([0]) + bytes(8) + bytes([0, 5, 250, 1]) + struct.pack("<d", float("nan")))


# The op classes in sbx_op_classes' order (src/op/classes.c).
CLASSES = ["Convolve", "ConvBackward", "LocalConnections", "LocalBackward", "MaxPool", "MaxPoolGrad",
           "ConvolutionIndices", "Binomial", "Multinomial", "Poisson", "StructuredDot", "SampledDot",
           "EliminateZeros", "DenseFromSparse", "SparseFromDense", "SparseLike", "Transpose", "Dot", "Add", "Scale",
           "Mul", "Tanh", "Relu", "ReluGrad", "Reshape", "Sum", "Mean", "SumTo", "BroadcastLike", "ZerosLike",
           "SoftmaxCrossEntropy", "SoftmaxCrossEntropyGrad", "SgdStep", "AdamStep"]
DTYPE = {"f64": 0, "f32": 1, "i64": 2}
KIND = {"input": 0, "shared": 1, "constant": 2, "sparse": 3, "scalar": 4}


def var(kind, dtype, shape, values=(), extra=()):
    """A starting variable: dtype byte, rank, extents (each known), kind, then its bytes."""
    b = [DTYPE[dtype], len(shape)]
    for e in shape:
        b += [e - 1, 1]
    b.append(KIND[kind])
    return b + [v + 2 for v in values] + list(extra)


def op(name, inputs, props=()):
    return [CLASSES.index(name), len(inputs)] + list(inputs) + [0] + list(props)


def program(start, steps, grad_wrt=None, compile_=True):
    b = [len(start) - 1, len(steps)]
    for s in start:
        b += s
    for s in steps:
        b += s
    b.append(0)  # one output
    if grad_wrt is None:
        b.append(0)
    else:
        b += [1, 0, grad_wrt, 0]
    b.append(1 if compile_ else 0)
    return bytes(b + list(range(1, 9)) + [0])


def corpus_graph():
    # Dot, Tanh, Sum, and the gradient with respect to the shared weights.
    write("graph", "dense_mlp", program(
        [var("input", "f64", [2, 3], [1, 0, -1, 2, 1, 0]), var("shared", "f64", [3, 2], [1, -1, 0, 2, 1, 1])],
        [op("Dot", [0, 1], [0, 0]), op("Tanh", [2]), op("Sum", [3], [0])], grad_wrt=1))
    # A sparse constant times a dense input.
    write("graph", "structured_dot", program(
        [var("sparse", "f64", [3, 3], [1, 0, 0, 0, 2, 0, -1, 0, 1], [0]), var("input", "f64", [3, 2], [1, 2, 0, 1, 2, 1])],
        [op("StructuredDot", [0, 1], [0]), op("Sum", [2], [0])], grad_wrt=1))
    # A 2 x 2 image with a 2 x 1 kernel: Convolve's shape bytes are ndim, 2 x (in, kernel, stride), channels, mode.
    conv_shape = [1, 1, 1, 0, 1, 0, 0, 0, 0]
    write("graph", "convolve", program(
        [var("input", "f64", [1, 4], [1, 2, 0, 1]), var("shared", "f64", [1, 2], [1, -1])],
        [op("Convolve", [0, 1], conv_shape + [0]), op("Sum", [2], [0])], grad_wrt=1))
    # Binomial from a scalar n, a scalar p and a shape constant, made dense and summed.
    write("graph", "binomial", program(
        [var("scalar", "i64", [], extra=[4]), var("scalar", "f64", [], extra=[3]), var("constant", "i64", [2], [2, 2])],
        [op("Binomial", [0, 1, 2], [0, 0]), op("DenseFromSparse", [3]), op("Sum", [4], [0])]))
    # Softmax cross-entropy of logits against labels, its gradient.
    write("graph", "softmax", program(
        [var("input", "f64", [2, 3], [1, 0, -1, 2, 1, 0]), var("constant", "i64", [2], [0, 1])],
        [op("SoftmaxCrossEntropy", [0, 1])], grad_wrt=0))
    # Max pooling over a 2 x 2 image, the gradient through the mask.
    pool_shape = [1, 1, 1, 1, 1, 0, 0, 0, 0]
    write("graph", "max_pool", program(
        [var("input", "f32", [1, 4], [1, 2, 0, -1])],
        [op("MaxPool", [0], pool_shape), op("Sum", [1], [0])], grad_wrt=0))
    # Local connections (unshared weights: a vector of channels * nkern * out_size * kernel_size).
    write("graph", "local_connections", program(
        [var("input", "f64", [1, 4], [1, 2, 0, 1]), var("shared", "f64", [4], [1, -1, 2, 0])],
        [op("LocalConnections", [0, 1], conv_shape + [0]), op("Sum", [2], [0])], grad_wrt=1))
    # Multinomial counts over the rows of a sparse probability matrix.
    write("graph", "multinomial", program(
        [var("scalar", "i64", [], extra=[4]), var("sparse", "f64", [2, 2], [1, 0, 0, 1], [0])],
        [op("Multinomial", [0, 1]), op("DenseFromSparse", [2]), op("Sum", [3], [0])]))
    rng = random.Random(16)
    write("graph", "random", bytes(rng.randrange(256) for _ in range(80)))


if __name__ == "__main__":
    corpus_npy()
    corpus_mtx()
    corpus_idx()
    corpus_sparse()
    corpus_conv()
    corpus_random()
    corpus_graph()
