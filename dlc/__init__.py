"""dlc: a small machine-learning compiler for ``.dl`` models -- the public Python API.

::

    import dlc
    from dlc.callbacks import EarlyStopping

    data = dlc.data.load_mnist()
    model = dlc.load_model("examples/mnist_mlp.dl", seed=0)
    model.fit(data.x_train, data.y_train, epochs=5, validation_split=0.1,
              callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])

``dlc`` is a thin front door over the internal packages (``compiler``:
the IR, passes and code generation; ``frontend_dsl``: the ``.dl`` language;
``runtime``: native modules, the Model API, data and the CLI).  Every name
here is the internal one, re-exported; the submodules ``dlc.data``,
``dlc.callbacks`` and ``dlc.schedules`` are ``runtime.data``,
``runtime.callbacks`` and ``compiler.schedules``.
"""

from compiler import __version__
from compiler.diagnostics import ArgumentTypeError, ArgumentValueError, DlError, DlRuntimeError
from runtime import compile, load_compiled, load_model, load_onnx
from runtime.decode import DecodeSession
from runtime.distributed import Distributed
from runtime.model import EXPORT_FORMATS, History, Model, NonFiniteLossError

from . import callbacks, data, schedules

__all__ = ["__version__", "compile", "load_compiled", "load_model", "load_onnx", "Model", "History",
           "DlError", "DlRuntimeError", "ArgumentTypeError", "ArgumentValueError", "NonFiniteLossError",
           "Distributed", "DecodeSession", "EXPORT_FORMATS", "callbacks", "data", "schedules"]
