"""Weight-quantized matmuls (ort_ops/quant_matmul/)."""
from ..catalogue import AttrSpec, OpSpec

_OUT_DTYPE = AttrSpec("out_dtype", "int", 1,
                      "ONNX element type of Y: 1 (float, default) or A's type (10 float16, 16 bfloat16); "
                      "MatmulInt8 W8A8 (A int8): 1 or 10")

SPECS = (
    OpSpec("MatmulInt4",
           "Y[..., M, N] = A[..., M, K] * W, A float16 or bfloat16; W dequantized from KAIO's INT4 layout: "
           "B_packed uint32 [N, K/8] (nibble i of word (n, k/8) is k = 8*(k/8)+i, signed two's complement "
           "in [-8, 7]), w[k, n] = (q[k, n] - zero_points[k/g, n]) * scales[k/g, n]; scales and optional "
           "zero_points in A's type, [K/group_size, N]; K % group_size == 0; f32 accumulation",
           (AttrSpec("group_size", "int", 128, "K rows sharing one scale: 32, 64 or 128 (default, KAIO's)"),
            _OUT_DTYPE)),
    OpSpec("MatmulInt8",
           "Y[..., M, N] = A[..., M, K] * W, B int8 [K, N] row-major. W8A8 (A int8): scales float32 with one "
           "element, Y = float(sum_k int32(a) * int32(b)) * scale with exact integer accumulation, no "
           "zero_points. W8A16 (A float16 or bfloat16): w = (b - zero_points) * scales, scales and optional "
           "zero_points in A's type, [K/group_size, N] (group_size > 0) or [1, N] / [N] (group_size 0, per "
           "channel)",
           (AttrSpec("group_size", "int", 0,
                     "W8A16: K rows sharing one scale, 0 (default) for per channel; must divide K. "
                     "W8A8: must be 0"),
            _OUT_DTYPE)),
)
