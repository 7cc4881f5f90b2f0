"""Python-side declarations of the com.kaio ops (documentation and attributes), one module per
op family, mirroring ort_ops/<family>/."""
from .attention import SPECS as _ATTENTION
from .matmul_tc import SPECS as _MATMUL_TC
from .qkv_project import SPECS as _QKV_PROJECT
from .quant_matmul import SPECS as _QUANT_MATMUL

ALL_SPECS = (*_MATMUL_TC, *_QUANT_MATMUL, *_ATTENTION, *_QKV_PROJECT)
