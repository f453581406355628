"""Checks an installed copy of the package: run with PYTHONPATH set to the folder that holds the
installed `sparsebox` (and nothing else pointing at a build tree), as

    PYTHONPATH=PREFIX/lib/python3.X/dist-packages python3 check_installed.py PREFIX/lib/python3.X/dist-packages

It checks that the package, the library and the C extension (where one is installed) it loaded are
the installed ones (beside the package), then makes one call of each module. Exits 0 on success, 1 on a failure, 77 (skipped) when
numpy or scipy is missing."""
import os
import sys

try:
    import numpy as np
    import scipy.sparse  # noqa: F401
except ImportError as e:
    print("skipped:", e)
    sys.exit(77)


def main(site):
    site = os.path.realpath(site)
    os.environ.pop("SPARSEBOX_LIBRARY_DIR", None)
    import sparsebox
    from sparsebox import _lib, op, sp, sp2
    here = os.path.realpath(os.path.dirname(sparsebox.__file__))
    assert here == os.path.join(site, "sparsebox"), "imported %s, not the copy in %s" % (here, site)
    lib = os.path.realpath(_lib.lib._name)
    assert os.path.dirname(lib) == here, "loaded %s, not the library beside the package" % lib
    import glob
    built = glob.glob(os.path.join(here, "_native*"))  # installed where the build had python3-dev
    if built:
        assert _lib.native is not None, "%s is installed but the package did not load it" % built[0]
        loaded = os.path.realpath(_lib.native.__file__)
        assert os.path.dirname(loaded) == here, "loaded %s, not the extension beside the package" % loaded
    else:
        assert _lib.native is None
    out, outshp = sp.convolve(np.ones((1, 4)), (2, 2), 1, np.ones((2, 16)), (4, 4))
    assert out.shape == (2, 9) and np.all(out == 4) and list(outshp) == [1, 3, 3]
    m = sp2.csr_fbinomial(5, 0.1, (3, 5), seed=1)
    assert m.shape == (3, 5) and m.format == "csr"
    a = sparsebox.convmtx(np.ones((2, 2)), (3, 3))
    assert a.shape == (4, 9)
    c = sp.Convolve((2, 2), 1, (4, 4))
    assert np.array_equal(c(np.ones((2, 16)), np.ones((1, 4))), out)
    assert op.disconnected is sp2.disconnected
    try:
        import torch
    except ImportError:
        print("torch: not installed, sparsebox.torch not checked")
    else:
        import sparsebox.torch as sbt
        y = sbt.Conv2d(1, 2, 3, dtype=torch.float64)(torch.zeros(1, 1, 5, 5, dtype=torch.float64))
        assert tuple(y.shape) == (1, 2, 3, 3)
    print("installed sparsebox %s in %s, library %s, extension %s: ok" % (
        sparsebox.__version__, here, os.path.basename(lib), os.path.basename(built[0]) if built else "none"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    try:
        main(sys.argv[1])
    except AssertionError as e:
        print("FAIL:", e)
        sys.exit(1)
