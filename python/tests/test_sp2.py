"""sp2: the original's TestBinomial, TestPoisson and TestMultinomial in other words, plus what the
original could not promise: the same seed gives the same matrix at any thread count."""
import numpy as np
import pytest
import scipy.sparse as ss

import sparsebox
from sparsebox import sp2


def random_sparse(shape, dtype, nnz, seed, fmt):
    """nnz positive values at random positions (the original's random_lil, in the given format)."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(shape[0] * shape[1], nnz, replace=False)
    vals = rng.uniform(0.5, 4.0, nnz).astype(dtype)
    m = ss.coo_matrix((vals, np.unravel_index(flat, shape)), shape)
    return m.asformat(fmt)


# --- TestPoisson ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_poisson(fmt, dtype):
    x = random_sparse((10, 40), dtype, 10, 1, fmt)
    y = sp2.poisson(x, seed=11)
    assert isinstance(y, ss.csr_matrix if fmt == "csr" else ss.csc_matrix)
    assert y.format == fmt and y.dtype == x.dtype and y.shape == x.shape
    assert np.array_equal(np.floor(y.data), y.data) and np.all(y.data > 0)  # integral draws, zeros dropped
    # only where x has an entry
    assert np.all((y.toarray() != 0) <= (x.toarray() != 0))
    assert sp2.poisson.infer_shape(x) == (10, 40)


def test_poisson_mean():
    x = ss.csr_matrix(np.full((200, 200), 3.0))
    y = sp2.poisson(x, seed=5)
    assert abs(y.sum() / 40000 - 3.0) < 0.05  # sd of the mean: sqrt(3 / 40000) = 0.009


# --- TestBinomial ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binomial(fmt, dtype):
    op = sp2.Binomial(fmt, dtype)
    m = op(5, 0.1, (3, 5), seed=3)
    assert m.shape == (3, 5) and m.format == fmt and m.dtype == np.dtype(dtype)
    d = m.toarray()
    assert np.array_equal(np.floor(d), d) and d.min() >= 0 and d.max() <= 5
    assert op.infer_shape(5, 0.1, (3, 5)) == (3, 5)
    assert op.infer_shape(5, 0.1, np.array([7, 2])) == (7, 2)


def test_ready_instances():
    for op, fmt, dt in [(sp2.csr_fbinomial, "csr", np.float32), (sp2.csc_fbinomial, "csc", np.float32),
                        (sp2.csr_dbinomial, "csr", np.float64), (sp2.csc_dbinomial, "csc", np.float64)]:
        assert op == sp2.Binomial(fmt, dt)
        m = op(2, 0.5, (4, 4), seed=1)
        assert m.format == fmt and m.dtype == dt


def test_binomial_mean_and_structure():
    m = sp2.csr_dbinomial(3, 0.2, (300, 400), seed=9)
    mean = m.sum() / (300 * 400)
    assert abs(mean - 0.6) < 0.01  # sd of the mean: sqrt(3 * 0.2 * 0.8 / 120000) = 0.002
    assert np.all(m.data > 0) and m.has_sorted_indices
    m.check_format(full_check=True)


def test_binomial_bad_arguments():
    with pytest.raises(ValueError, match="p"):
        sp2.csr_fbinomial(5, 1.5, (3, 5), seed=1)
    with pytest.raises(ValueError):
        sp2.csr_fbinomial(5, 0.1, (3, -5), seed=1)
    with pytest.raises(ValueError, match="integer"):
        sp2.csr_fbinomial(2.5, 0.1, (3, 5), seed=1)  # no truncation of n
    with pytest.raises(ValueError):
        sp2.Binomial("coo", "float32")
    with pytest.raises(ValueError, match="n"):
        sp2.Binomial("csr", "float32")(2 ** 25, 0.5, (1, 1), seed=1)  # float32 cannot hold 0..n


# --- TestMultinomial -------------------------------------------------------------------------------------------------
P = np.array([[0.0, 0.5, 0.0, 0.5], [0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 0.0], [0.3, 0.3, 0.0, 0.4]])


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_multinomial_scalar_n(fmt):
    p = ss.csr_matrix(P).asformat(fmt)
    y = sp2.multinomial(5, p, seed=4)
    assert y.format == fmt and y.dtype == p.dtype and y.shape == p.shape
    assert np.array_equal(np.asarray(y.sum(axis=1)).ravel(), [5, 5, 5, 5])
    assert y.nnz == p.nnz  # zero counts stay stored, as in the original
    assert y.toarray()[2, 1] == 5


def test_multinomial_vector_n_and_infer_shape():
    p = ss.csr_matrix(P.astype(np.float32))
    n = np.array([1, 2, 3, 4])
    y = sp2.multinomial(n, p, seed=4)
    assert y.dtype == np.float32
    assert np.array_equal(np.asarray(y.sum(axis=1)).ravel(), n)
    assert sp2.multinomial.infer_shape(n, p) == (4, 4)
    assert sp2.multinomial.infer_shape(5, ss.csr_matrix((7, 3))) == (7, 3)


def test_multinomial_bad_rows():
    bad = ss.csr_matrix(np.array([[0.5, 0.2], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="row"):
        sp2.multinomial(3, bad, seed=1)
    with pytest.raises(ValueError):
        sp2.multinomial(np.array([1, 2, 3]), ss.csr_matrix(P), seed=1)  # 3 values for 4 rows


# --- the Op answers --------------------------------------------------------------------------------------------------
def test_equality_and_hash():
    a, b = sp2.Binomial("csr", "float32"), sp2.Binomial("csr", np.float32)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != sp2.Binomial("csc", "float32") and a != sp2.Binomial("csr", "float64")
    assert sp2.Multinomial() == sp2.multinomial and hash(sp2.Multinomial()) == hash(sp2.multinomial)
    assert sp2.Poisson() == sp2.poisson and sp2.poisson != sp2.multinomial
    assert a != sp2.poisson


def test_grad_answers_as_the_original():
    g = sp2.csr_fbinomial.grad([5, 0.1, (3, 5)], [None])
    assert isinstance(g[0], sp2.undefined) and isinstance(g[1], sp2.undefined) and g[2] is sp2.disconnected
    assert "n" in g[0].reason and "p" in g[1].reason
    p = ss.csr_matrix(P)
    g = sp2.multinomial.grad([5, p], [None])
    assert all(isinstance(v, sp2.undefined) for v in g) and len(g) == 2
    g = sp2.poisson.grad([p], [None])
    assert len(g) == 1 and isinstance(g[0], sp2.undefined)
    assert sp2.undefined("why") == sp2.undefined("why") and repr(sp2.disconnected) == "disconnected"


def test_connection_pattern():
    assert sp2.csr_fbinomial.connection_pattern() == [[True], [True], [False]]
    assert sp2.multinomial.connection_pattern() == [[True], [True]]
    assert sp2.poisson.connection_pattern() == [[True]]


# --- reproducible ----------------------------------------------------------------------------------------------------
def same(a, b):
    return (a.format == b.format and a.shape == b.shape and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data) and a.dtype == b.dtype)


def test_same_seed_same_matrix_at_any_thread_count():
    before = sparsebox.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            sparsebox.set_num_threads(threads)
            assert sparsebox.get_num_threads() == threads
            b = sp2.csc_dbinomial(4, 0.01, (3000, 2000), seed=77)
            results.append((b, sp2.poisson(b, seed=78), sp2.multinomial(6, ss.csr_matrix(P), seed=79)))
        for r in results[1:]:
            assert all(same(x, y) for x, y in zip(results[0], r))
    finally:
        sparsebox.set_num_threads(0)
    assert sparsebox.get_num_threads() == before or before >= 1
    assert not same(sp2.csr_dbinomial(4, 0.01, (300, 200), seed=1), sp2.csr_dbinomial(4, 0.01, (300, 200), seed=2))


def test_set_num_threads_checks():
    with pytest.raises(TypeError):
        sparsebox.set_num_threads(1.5)
