"""IR-to-IR passes, each registered by name, and the pass manager that runs them.

Importing this package registers every pass in :data:`PASSES`.  See
``docs/passes.md``.
"""

from . import autodiff, canonicalize, cse, dce  # noqa: F401  (each module registers its passes)
from .autodiff import grad, inline_function  # noqa: F401
from .dce import dce_function  # noqa: F401
from .manager import (  # noqa: F401
    PASSES,
    PIPELINES,
    PassContext,
    PassInfo,
    PassRecord,
    PassVerifyError,
    PipelineError,
    PipelineReport,
    count_ops,
    parse_pipeline,
    register_pass,
    run_pipeline,
)

__all__ = [
    "PASSES", "PIPELINES", "PassContext", "PassInfo", "PassRecord", "PassVerifyError",
    "PipelineError", "PipelineReport", "count_ops", "dce_function", "grad", "inline_function",
    "parse_pipeline", "register_pass", "run_pipeline",
]
