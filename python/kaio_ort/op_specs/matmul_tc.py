"""Dense tensor-core matmul (ort_ops/matmul_tc/)."""
from ..catalogue import AttrSpec, OpSpec

OUT_DTYPE_DOC = "ONNX element type of the output: 1 (float, default) or the input's type (10 float16, 16 bfloat16)"
_ATTRS = (
    AttrSpec("out_dtype", "int", 1, OUT_DTYPE_DOC),
    AttrSpec("trans_b", "int", 0, "1: B is [..., N, K] and Y = A * B^T"),
)
_FWD_DOC = ("Y[..., M, N] = A[..., M, K] * B ({dtype}); B [K, N] or [..., K, N], batch dims broadcast like "
            "ONNX MatMul; f32 accumulation; {path}")

SPECS = (
    OpSpec("MatmulTc", _FWD_DOC.format(dtype="float16", path="mma.sync tensor cores"), _ATTRS),
    OpSpec("MatmulTcBf16", _FWD_DOC.format(dtype="bfloat16", path="mma.sync tensor cores"), _ATTRS),
    OpSpec("MatmulTcAsync", _FWD_DOC.format(dtype="float16", path="pipelined (cp.async / TMA + wgmma)"), _ATTRS),
    OpSpec("MatmulTcBf16Async", _FWD_DOC.format(dtype="bfloat16", path="pipelined (cp.async / TMA + wgmma)"), _ATTRS),
    OpSpec("MatmulTcGrad",
           "dA = dY * op(B)^T, dB = sum over broadcast batch of A^T * dY (trans_b: dY^T * A); "
           "dY float or the inputs' type; dA, dB in A's and B's type and shape",
           (AttrSpec("trans_b", "int", 0, "as in the forward op"),)),
)
