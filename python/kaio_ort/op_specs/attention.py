"""Scaled dot-product attention and its gradient (ort_ops/attention/)."""
from ..catalogue import AttrSpec, OpSpec

_SCALE = AttrSpec("scale", "float", 0.0, "multiplies Q K^T; 0 (default) means 1/sqrt(D); finite and >= 0")
_LAYOUT = AttrSpec("layout", "string", "bhsd",
                   "'bhsd': Q [..., H, S, D] (rank >= 2, [S, D] is one head); 'bshd': Q [B, S, H, D] (rank 4)")
_OUT_DTYPE = AttrSpec("out_dtype", "int", 1,
                      "ONNX element type of O: 1 (float, default) or the input's type (10 float16, 16 bfloat16)")
_FWD_ATTRS = (_SCALE, _OUT_DTYPE, _LAYOUT)

_FWD_DOC = ("O = softmax(scale * Q K^T{mask}) V per head; Q [..., Hq, Sq, D], K [..., Hkv, Sk, D], "
            "V [..., Hkv, Sk, Dv] ({dtypes}); D, Dv in 1..256; {heads}; {rest}")
_CAUSAL = (" with a causal mask aligned bottom-right (query i sees keys j <= i + Sk - Sq; "
           "a query seeing no key outputs zeros)")
_TC = dict(dtypes="float16 or bfloat16", heads="Hkv == Hq",
           rest="scores of a query tile in shared memory (CUDA: Sk capped by the device; use AttentionFlash beyond)")
_FLASH = dict(dtypes="float16, bfloat16 or float32",
              heads="GQA/MQA: Hq % Hkv == 0, query head h uses kv head h / (Hq / Hkv)",
              rest="online softmax, any Sk; optional output LSE float32 [..., Hq, Sq], natural-log logsumexp "
                   "of each row's scaled, masked scores (-inf for a row that sees no key)")

SPECS = (
    OpSpec("AttentionTc", _FWD_DOC.format(mask="", **_TC), _FWD_ATTRS),
    OpSpec("AttentionTcCausal", _FWD_DOC.format(mask=_CAUSAL, **_TC), _FWD_ATTRS),
    OpSpec("AttentionFlash", _FWD_DOC.format(mask="", **_FLASH), _FWD_ATTRS),
    OpSpec("AttentionFlashCausal", _FWD_DOC.format(mask=_CAUSAL, **_FLASH), _FWD_ATTRS),
    OpSpec("AttentionFlashGrad",
           "(dQ, dK, dV) of AttentionFlash[Causal] from (dO, Q, K, V, O, LSE): P is recomputed from Q, K and "
           "LSE, D_i = rowsum(dO * O); dO and O float32 or Q's type, shaped like O; LSE float32 as the "
           "forward's; dQ, dK, dV in Q's type and Q's, K's, V's shapes (dK, dV summed over the query heads "
           "sharing a kv head)",
           (AttrSpec("causal", "int", 0, "1: the forward was AttentionFlashCausal"),
            _SCALE, _LAYOUT,
            AttrSpec("deterministic", "int", 0,
                     "1: no float atomics on CUDA (bitwise reproducible); the CPU kernel always is"))),
)
