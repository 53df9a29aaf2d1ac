"""dlc's compiler: the dl IR, the op table, passes and native code generation."""

__version__ = "0.1.0"
