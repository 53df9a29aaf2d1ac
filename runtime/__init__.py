"""The dlc runtime: compiled modules, the Model API, datasets and the ``dlc`` CLI."""

from .compiled import compile, load_compiled  # noqa: E402,F401,A001  (native code, runtime/compiled.py)
from .interop.onnx_import import load_onnx  # noqa: E402,F401  (ONNX models, runtime/interop/)
from .model import load_model  # noqa: E402,F401  (the Model API, runtime/model.py)
