"""What the numpy/scipy peers (peer_numpy.py, peer_scipy.py) share: importing numpy and scipy, and
the lines that report them to the C benchmark."""
import platform
import sys


def numpy_and_scipy(argv):
    """(np, scipy, None) with scipy.sparse loaded and the version lines printed; or (None, None,
    status) when the script is done: 3 after a "skip <reason>" line when an import fails, 0 for
    --versions."""
    try:
        import numpy as np
        import scipy
        import scipy.sparse  # noqa: F401 (loads the submodule)
    except ImportError as e:
        print("skip", f"{sys.executable}: {e}")
        return None, None, 3
    print("python_version", platform.python_version())
    print("numpy_version", np.__version__)
    print("scipy_version", scipy.__version__)
    if argv[1:] == ["--versions"]:
        return None, None, 0
    return np, scipy, None
