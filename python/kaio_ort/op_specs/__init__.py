"""Python-side declarations of the com.kaio ops (documentation and attributes), one module per
op family, mirroring ort_ops/<family>/."""
from .attention import SPECS as _ATTENTION
from .matmul_tc import SPECS as _MATMUL_TC

ALL_SPECS = (*_MATMUL_TC, *_ATTENTION)
