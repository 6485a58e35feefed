"""Central finite differences: the independent truth for every gradient test."""
import numpy as np

EPS = 1e-6


def numeric_grad(f, a, eps=EPS):
    """d f() / d a by central differences, perturbing a (float64) in place."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        saved = a[idx]
        a[idx] = saved + eps
        up = f()
        a[idx] = saved - eps
        down = f()
        a[idx] = saved
        g[idx] = (up - down) / (2 * eps)
    return g


def assert_grad(analytic, f, a, name=""):
    np.testing.assert_allclose(analytic, numeric_grad(f, a), rtol=1e-6, atol=1e-8,
                               err_msg=name)
