"""Fused Q/K/V projections with quantized weights (ort_ops/qkv_project/)."""
from ..catalogue import AttrSpec, OpSpec

_COMMON = ("(Q, K, V) = (X Wq * sq + bq, X Wk * sk + bk, X Wv * sv + bv) from one read of X float16 or "
           "bfloat16 [..., M, K], written in X's type as [..., M, N*]; Nq, Nk, Nv may differ (GQA); biases "
           "optional, X's type, [N*], all three or none; ")

SPECS = (
    OpSpec("QkvProjectInt8",
           _COMMON + "W* int8 [K, N*] row-major; s* float32 with one element (per tensor) or [N*] (per channel)"),
    OpSpec("QkvProjectInt4",
           _COMMON + "W* uint32 [N*, K/8] (MatmulInt4's INT4 layout, symmetric: no zero points); s* X's type "
           "[K/group_size, N*]; K % group_size == 0",
           (AttrSpec("group_size", "int", 128, "K rows sharing one scale: 32, 64 or 128 (default, KAIO's)"),)),
)
