"""References for ort_ops/matmul_tc/."""
import numpy as np


def _sum_to_shape(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Sums a broadcast result back to an operand's shape (the adjoint of numpy broadcasting)."""
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and x.shape[i] != 1:
            x = x.sum(axis=i, keepdims=True)
    return x


def matmul(a, b, trans_b: bool = False) -> np.ndarray:
    """Y = A * op(B) in float64 with ONNX MatMul batch broadcasting; op(B) = B^T if trans_b."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def matmul_grad(dy, a, b, trans_b: bool = False):
    """(dA, dB) of Y = A * op(B), summed over broadcast batch dims, float64."""
    dy, a, b = (np.asarray(x, np.float64) for x in (dy, a, b))
    bt = np.swapaxes(b, -1, -2)
    if trans_b:  # Y = A B^T: dA = dY B, dB = dY^T A
        da = np.matmul(dy, b)
        db = np.matmul(np.swapaxes(dy, -1, -2), a)
    else:        # Y = A B:   dA = dY B^T, dB = A^T dY
        da = np.matmul(dy, bt)
        db = np.matmul(np.swapaxes(a, -1, -2), dy)
    return _sum_to_shape(da, a.shape), _sum_to_shape(db, b.shape)
