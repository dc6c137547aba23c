"""Comparing features that two computations made: in other batches, or on
TensorFlow and on OpenVINO.

On some CPUs (seen on an AVX2-only AMD EPYC) TensorFlow's kernels sum in
an order that depends on the batch size and on an image's position in its
batch, so the same image run in another batch gets features that differ by
float32 rounding (up to 2e-6 of the largest feature;
docs/user_guide/guarantees.rst). Rows read back from a
cache or a store are the stored bytes and are compared exactly; features
that two runs computed in different batches, or on two runtimes (OpenVINO
float32 matches TensorFlow within the same 1e-5), are compared with this.
"""

import numpy as np

#: Relative tolerance: float32 rounding over a CNN's sums, five times what
#: batch layouts were seen to change (2e-6 of the largest feature).
RTOL = 1e-5


def assert_same_features(actual, desired, rtol=RTOL):
    """Equal to float32 rounding: ``|a - d| <= rtol * (|d| + max |d|)``.

    The absolute part scales with the largest feature, so that features
    near zero (ReLU outputs, 1e-3 of the largest) are held to the same
    absolute error as the rest.
    """
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    scale = float(np.abs(desired).max()) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)
