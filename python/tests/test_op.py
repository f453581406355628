"""The Op contract in Python: make_node -> Apply, perform with output-storage reuse, infer_shape, grad,
connection_pattern, equality, for the layer ops and the random ops (as the original's tests use them:
InferShapeTester's infer_shape against perform, verify_grad's gradients)."""
import numpy as np
import pytest
import scipy.sparse as ss

from sparsebox import op, sp, sp2

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 72))
K = RNG.standard_normal((2, 18))
B = RNG.standard_normal(2)
CONV = sp.Convolve((3, 3), 2, (2, 6, 6), (1, 2))


def test_make_node_types_the_outputs():
    node = CONV.make_node(X, K, B)
    assert isinstance(node, op.Apply) and node.op == CONV and len(node.inputs) == 3
    (out,) = node.outputs
    assert out.owner is node and out.index == 0
    assert out.type == op.tensor(np.float64, (None, 2 * 4 * 2))
    assert repr(out.type) == "float64[?,16]"
    # symbolic inputs work too
    n2 = CONV.make_node(op.tensor("float32", (None, 72))(), op.tensor("float32", (2, 18))())
    assert n2.outputs[0].type.dtype == np.float32


def test_make_node_refuses_bad_inputs():
    with pytest.raises(TypeError, match="images"):
        CONV.make_node(X[0], K)  # 1-d images
    with pytest.raises(TypeError):
        CONV.make_node(X, K.astype(np.float32))  # dtypes differ
    with pytest.raises(TypeError, match="x"):
        sp2.poisson.make_node(np.ones((2, 2)))  # dense where sparse is needed
    with pytest.raises(TypeError, match="p"):
        sp2.multinomial.make_node(5, np.ones((2, 2)))
    with pytest.raises(TypeError):
        sp2.csr_fbinomial.make_node(5, 0.5)  # 2 inputs for 3


def test_perform_and_output_storage_reuse():
    node = CONV.make_node(X, K, B)
    storage = [[None]]
    CONV.perform(node, [X, K, B], storage)
    y = storage[0][0]
    want, _ = sp.convolve(K, (3, 3), 2, X, (2, 6, 6), (1, 2), B)
    assert np.array_equal(y, want)
    # a value of the right type and shape is written in place
    CONV.perform(node, [2 * X, K, B], storage)
    assert storage[0][0] is y and np.array_equal(y, sp.convolve(K, (3, 3), 2, 2 * X, (2, 6, 6), (1, 2), B)[0])
    mine = np.zeros((3, 16))
    storage = [[mine]]
    CONV.perform(node, [X, K, B], storage)
    assert storage[0][0] is mine and np.array_equal(mine, want)
    # another shape (a larger batch) is replaced
    CONV.perform(node, [np.vstack([X, X]), K, B], storage)
    assert storage[0][0] is not mine and storage[0][0].shape == (6, 16)
    with pytest.raises(ValueError):
        CONV.perform(node, [X[:, :70], K, B], [[None]])  # the wrong image size, caught by the library


def test_perform_sparse_output_keeps_the_matrix_object():
    o = sp2.csr_dbinomial
    node = o.make_node(3, 0.3, (20, 30), seed=5)
    storage = [[None]]
    o.perform(node, [3, 0.3, (20, 30)], storage)
    first = storage[0][0]
    again = [[first]]
    o.perform(node, [3, 0.3, (20, 30)], again)
    assert again[0][0] is first  # same type and shape: the object is kept
    assert (first != o(3, 0.3, (20, 30), seed=5)).nnz == 0  # perform == op(..., seed) for the same seed


def test_random_perform_is_reproducible_from_the_node_seed():
    p = ss.csr_matrix(np.array([[0.2, 0.8], [0.5, 0.5]]))
    node = sp2.multinomial.make_node(10, p, seed=123)
    a, b = [[None]], [[None]]
    sp2.multinomial.perform(node, [10, p], a)
    sp2.multinomial.perform(node, [10, p], b)
    assert np.array_equal(a[0][0].toarray(), b[0][0].toarray())
    assert node.seed == 123 and sp2.multinomial.make_node(10, p).seed != sp2.multinomial.make_node(10, p).seed


def test_infer_shape_against_perform():
    """InferShapeTester's check: infer_shape's shapes are perform's, without computing."""
    cases = [
        (CONV, [X, K, B]),
        (sp.LocalConnections((2, 2), 3, (2, 6, 6), (2, 1)), [X, RNG.standard_normal(2 * 3 * 5 * 3 * 4), None]),
        (sp.MaxPool((2, 6, 6), (2, 3)), [X]),
        (sp2.csc_fbinomial, [4, 0.5, (9, 11)]),
        (sp2.poisson, [ss.random(8, 5, 0.5, "csr", random_state=1)]),
        (sp.ConvolutionIndices((2, 5, 5), (3, 3), (1, 2), 2, "full", False), []),
    ]
    for o, inputs in cases:
        inputs = [v for v in inputs if v is not None]
        node = o.make_node(*inputs, seed=1)
        storage = [[None] for _ in node.outputs]
        o.perform(node, inputs, storage)
        assert o.infer_shape(node, inputs) == [v[0].shape for v in storage], o
        for var, v in zip(node.outputs, storage):
            assert var.type.accepts(v[0])


def test_grad_computes_the_librarys_gradients():
    g = RNG.standard_normal((3, 16))
    gx, gk, gb = CONV.grad([X, K, B], [g])
    rk, rx, rb = sp.convolve_grad(g, K, (3, 3), 2, X, (2, 6, 6), (1, 2), B)
    assert np.allclose(gx, rx, atol=1e-12) and np.allclose(gk, rk, atol=1e-12) and np.allclose(gb, rb, atol=1e-12)
    pool = sp.MaxPool((2, 6, 6), (2, 2))
    go = RNG.standard_normal((3, 18))
    (gi,) = pool.grad([X], [go, None])
    assert np.allclose(gi, sp.max_pool_grad(go, X, (2, 6, 6), (2, 2)))
    # no gradient reaching the output: disconnected
    assert CONV.grad([X, K, B], [None]) == [op.disconnected] * 3


def test_grad_by_central_differences():
    """verify_grad's check on the op: d sum(out * g) / d kerns against central differences."""
    o = sp.LocalConnections((2, 2), 1, (4, 4))
    x = RNG.standard_normal((2, 16))
    k = RNG.standard_normal(36)
    g = RNG.standard_normal((2, 9))
    _, gk = o.grad([x, k], [g])
    eps, num = 1e-6, np.zeros_like(k)
    for i in range(k.size):
        d = np.zeros_like(k)
        d[i] = eps
        num[i] = (np.sum(o(x, k + d) * g) - np.sum(o(x, k - d) * g)) / (2 * eps)
    assert np.allclose(gk, num, atol=1e-7)


def test_connection_pattern_and_equality():
    assert CONV.connection_pattern() == [[True], [True]]
    assert CONV.connection_pattern(CONV.make_node(X, K, B)) == [[True], [True], [True]]
    assert sp.MaxPool((6, 6), (2, 2)).connection_pattern() == [[True, True]]
    same = sp.Convolve((3, 3), 2, (2, 6, 6), (1, 2))
    assert same == CONV and hash(same) == hash(CONV)
    assert sp.Convolve((3, 3), 3, (2, 6, 6), (1, 2)) != CONV and sp.Convolve((3, 3), 2, (2, 6, 6)) != CONV
    assert sp.LocalConnections((3, 3), 2, (2, 6, 6), (1, 2)) != CONV
    ci = sp.ConvolutionIndices((5, 5), (2, 2))
    assert ci == sp.ConvolutionIndices((5, 5), (2, 2)) and ci != sp.ConvolutionIndices((5, 5), (2, 2), ws=False)
    assert sp.convolution_indices == sp.convolution_indices and sp.convolution_indices != ci


def test_convolution_indices_op_equals_evaluate():
    ci = sp.ConvolutionIndices((2, 5, 6), (3, 2), (2, 1), 2, "full", False)
    m, kmap = ci()
    indices, indptr, shape, _, _, kmap_e = sp.convolution_indices.evaluate((2, 5, 6), (3, 2), (2, 1), 2, "full", False)
    assert m.shape == shape and np.array_equal(m.indices, indices) and np.array_equal(m.indptr, indptr)
    assert np.array_equal(kmap, kmap_e) and np.array_equal(m.data - 1, kmap)
    with pytest.raises(TypeError, match="geometry"):
        sp.convolution_indices.make_node()


def test_types():
    t = op.sparse("csc", "float32", (3, None))
    assert repr(t) == "csc float32[3,?]" and t.ndim == 2
    assert t.accepts(ss.csc_matrix((3, 7), dtype=np.float32)) and not t.accepts(ss.csr_matrix((3, 7)))
    assert op.tensor("int64", ()) == op.tensor(np.int64, ()) and op.tensor("int64", ()) != op.tensor("int32", ())
    with pytest.raises(ValueError):
        op.Type("sparse", "float64", (3,), "csr")
