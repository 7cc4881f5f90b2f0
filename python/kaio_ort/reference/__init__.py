"""float64 numpy references of every com.kaio op, shared by all tests and benchmarks.
One module per op family; each function takes numpy arrays (any float dtype) and returns float64."""
from .attention import attention, attention_grad  # noqa: F401
from .matmul import matmul, matmul_grad  # noqa: F401
from .quant import (  # noqa: F401
    dequantize_int4,
    dequantize_int8,
    matmul_int4,
    matmul_int8,
    qkv_project_int4,
    qkv_project_int8,
    quantize_int4,
    quantize_int8,
)
