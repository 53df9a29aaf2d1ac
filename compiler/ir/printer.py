"""The printer: dl IR -> MLIR text (the generic op form, readable by ``mlir-opt``).

::

    module attributes {dl.model = {name = "mlp"}} {
      func.func @predict(%w: tensor<784x10xf32> {dl.name = "w"}, %x: tensor<?x784xf32, "N"> {dl.name = "x"}) -> (tensor<?x10xf32, "N"> {dl.name = "y"}) attributes {inplace = [[0, 0]]} {
        %0 = "dl.matmul"(%x, %w) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
        func.return %0 : tensor<?x10xf32, "N">
      }
    }

Deterministic, so golden files stay stable: parameters print as ``%<name>``,
op results as ``%0, %1, ...`` in op order, attributes sorted by key.  Module
attributes carry a ``dl.`` prefix (MLIR requires dialect-prefixed attributes on
a module); parameter and output names ride as the argument and result attribute
``dl.name`` (which ``mlir-opt`` keeps when it renames arguments ``%arg0``).  See
``docs/ir.md`` for the whole text form; :mod:`compiler.ir.parser` reads it back
and ``print(parse(print(m))) == print(m)``.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import numpy as np

from ..diagnostics import UNKNOWN, Location
from .core import Function, Module, Op, Value
from .dims import DimExpr
from .types import DType, TensorType

INDENT = "  "

# MLIR's bare identifier, and the suffix of a `%value` or `@symbol` name.
BARE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*\Z")
SUFFIX_ID = re.compile(r"[A-Za-z_$.\-][A-Za-z0-9_$.\-]*\Z")

MODULE_ATTR_PREFIX = "dl."
OUTPUT_NAME_ATTR = "dl.name"

# numpy element types a dense attribute may hold, by MLIR element type name.
DENSE_ELEMENT_TYPES: dict[str, np.dtype] = {
    "f16": np.dtype(np.float16), "f32": np.dtype(np.float32), "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8), "i16": np.dtype(np.int16), "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64), "ui8": np.dtype(np.uint8), "ui16": np.dtype(np.uint16),
    "ui32": np.dtype(np.uint32), "ui64": np.dtype(np.uint64), "i1": np.dtype(np.bool_),
}
_ELEMENT_TYPE_NAMES = {dt: name for name, dt in DENSE_ELEMENT_TYPES.items()}
_FLOAT_BITS = {np.dtype(np.float16): 16, np.dtype(np.float32): 32, np.dtype(np.float64): 64}


# ---------------------------------------------------------------------------
# Public API

def print_module(module: Module, debug_locations: bool = False) -> str:
    """The MLIR text of ``module``; ``debug_locations`` appends ``loc(...)`` to ops and functions."""
    attrs = {MODULE_ATTR_PREFIX + k: v for k, v in module.attrs.items()}
    head = "module"
    if attrs:
        head += " attributes " + format_attr_dict(attrs)
    lines = [head + " {"]
    for func in module.functions:
        lines.append(print_function(func, debug_locations, indent=1))
    lines.append("}")
    return "\n".join(lines) + "\n"


def print_function(func: Function, debug_locations: bool = False, indent: int = 0) -> str:
    """The MLIR text of one ``func.func`` (no trailing newline)."""
    pad = INDENT * indent
    names = value_names(func)
    lines = [pad + _signature(func) + " {"]
    for op in func.ops:
        lines.append(pad + INDENT + print_op(op, names, debug_locations))
    lines.append(pad + INDENT + _return(func, names))
    close = pad + "}"
    if debug_locations:
        close += " " + format_location(func.loc)
    lines.append(close)
    return "\n".join(lines)


def print_op(op: Op, names: dict[Value, str], debug_locations: bool = False) -> str:
    """One op in MLIR's generic form, e.g. ``%2 = "dl.add"(%0, %1) : (...) -> ...``."""
    text = ""
    if op.results:
        text = ", ".join(value_ref(v, names) for v in op.results) + " = "
    text += f'"dl.{op.name}"(' + ", ".join(value_ref(v, names) for v in op.operands) + ")"
    if op.attrs:
        text += " " + format_attr_dict(op.attrs)
    operand_types = ", ".join(format_type(v.type) for v in op.operands)
    text += f" : ({operand_types}) -> " + _result_types(op)
    if debug_locations:
        text += " " + format_location(op.loc)
    return text


def value_names(func: Function) -> dict[Value, str]:
    """Printed names: ``%<name>`` for parameters, ``%0, %1, ...`` for op results in order."""
    names: dict[Value, str] = {}
    for i, p in enumerate(func.params):
        names[p] = "%" + (p.name if p.name is not None else f"arg{i}")
    counter = 0
    for op in func.ops:
        for r in op.results:
            if r not in names:
                names[r] = f"%{counter}"
                counter += 1
    return names


def value_ref(v: Value, names: dict[Value, str]) -> str:
    """``v``'s printed name; a value foreign to the function prints as ``%!undefined``."""
    return names.get(v, "%!undefined")


# ---------------------------------------------------------------------------
# Functions

def _signature(func: Function) -> str:
    names = value_names(func)
    params = ", ".join(f"{names[p]}: {format_type(p.type)}{_arg_name(p, i)}" for i, p in enumerate(func.params))
    results = []
    for i, v in enumerate(func.outputs):
        text = format_type(v.type)
        name = func.output_names[i] if i < len(func.output_names) else None
        if name is not None:
            text += " " + format_attr_dict({OUTPUT_NAME_ATTR: name})
        results.append(text)
    text = f"func.func @{format_symbol(func.name)}({params}) -> ({', '.join(results)})"
    if func.attrs:
        text += " attributes " + format_attr_dict(_printed_attrs(func))
    return text


def _arg_name(p: Value, position: int) -> str:
    """`` {dl.name = "x"}``: a parameter's name as an argument attribute, which tools that
    rename arguments (``mlir-opt`` prints ``%arg0``) keep, so the parser gets it back;
    nothing for a name those tools would give it anyway (``arg0`` in position 0)."""
    if p.name is None or p.name == f"arg{position}":
        return ""
    return " " + format_attr_dict({OUTPUT_NAME_ATTR: p.name})


def _printed_attrs(func: Function) -> dict:
    """``func.attrs`` as printed: ``inplace`` pairs name their parameter by position,
    ``[[1, 0]]`` (output 1 into argument 0), which survives tools that rename arguments
    (``mlir-opt`` prints them as ``%arg0``); the parser turns positions back into names."""
    attrs = dict(func.attrs)
    if "inplace" in attrs:
        position = {p.name: i for i, p in enumerate(func.params)}
        attrs["inplace"] = tuple((out, position.get(name, name)) for out, name in attrs["inplace"])
    return attrs


def _return(func: Function, names: dict[Value, str]) -> str:
    if not func.outputs:
        return "func.return"
    values = ", ".join(value_ref(v, names) for v in func.outputs)
    types = ", ".join(format_type(v.type) for v in func.outputs)
    return f"func.return {values} : {types}"


def _result_types(op: Op) -> str:
    if len(op.results) == 1:
        return format_type(op.results[0].type)
    return "(" + ", ".join(format_type(v.type) for v in op.results) + ")"


def format_symbol(name: str) -> str:
    """A function name after ``@``: bare if it is an identifier, else a string."""
    return name if BARE_ID.match(name) else format_string(name)


def format_type(t: Any) -> str:
    """A value's type; anything but a :class:`TensorType` prints as ``!dl.invalid``."""
    return str(t) if isinstance(t, TensorType) else "!dl.invalid"


# ---------------------------------------------------------------------------
# Locations

def format_location(loc: Location) -> str:
    """``loc("f.dl":3:5)``, ``loc("f.dl":3:5 to 3:9)``, ``loc("backward"(...))``, ``loc(unknown)``."""
    inner = _location_body(loc)
    if loc.backward:
        inner = f'"backward"({inner})'
    return f"loc({inner})"


def _location_body(loc: Location) -> str:
    if loc.file == UNKNOWN.file and loc.line == 0 and loc.col == 0:
        return "unknown"
    text = f"{format_string(loc.file)}:{loc.line}:{loc.col}"
    if loc.end_line is not None and loc.end_col is not None:
        text += f" to {loc.end_line}:{loc.end_col}"
    return text


# ---------------------------------------------------------------------------
# Attributes

def format_attr_dict(attrs: dict[str, Any]) -> str:
    """``{a = 1, b = "x"}`` with keys sorted; ``{}`` when empty."""
    items = [f"{format_key(k)} = {format_attr(attrs[k])}" for k in sorted(attrs)]
    return "{" + ", ".join(items) + "}"


def format_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"attribute keys must be strings, got {key!r}")
    return key if BARE_ID.match(key) else format_string(key)


def format_attr(value: Any) -> str:
    """One attribute value in MLIR syntax (see ``docs/ir.md``, "Attributes")."""
    if value is None:
        return "unit"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return format_int(int(value))
    if isinstance(value, (float, np.floating)):
        return format_float(float(value))
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, DimExpr):          # read back by the attribute's kind (dims, bounds)
        return format_string(str(value))
    if isinstance(value, DType):
        return str(value)
    if isinstance(value, TensorType):
        return str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, dict):
        return format_attr_dict(value)
    if isinstance(value, np.ndarray):
        return format_dense(value)
    raise TypeError(f"the IR text form has no syntax for attribute value {value!r}")


def format_int(n: int) -> str:
    """``3``; beyond i64 with a wide enough type (``2 ** 100`` -> ``... : i128``), as MLIR needs."""
    if -2 ** 63 <= n < 2 ** 63:
        return str(n)
    bits = -(-(n.bit_length() + 1) // 64) * 64
    return f"{n} : i{bits}"


def format_float(x: float) -> str:
    """An f64 literal that reads back to exactly ``x``; inf and nan print as hex bits."""
    if not math.isfinite(x):
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        return f"0x{bits:016X} : f64"
    return _mlir_float(repr(x))


def _mlir_float(text: str) -> str:
    """MLIR float literals need a ``.`` before any exponent: ``1e-07`` -> ``1.0e-07``."""
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def format_string(s: str) -> str:
    """A double-quoted MLIR string; bytes outside printable ASCII as ``\\XX``."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    out.append('"')
    return "".join(out)


def format_dense(array: np.ndarray) -> str:
    """``dense<[[1.0, 2.0]]> : tensor<1x2xf32>``; a splat when every element is the same.

    An array without elements prints as ``dense<>`` (as MLIR does), since a
    nested list cannot show the dims after a zero.
    """
    name = _ELEMENT_TYPE_NAMES.get(array.dtype.newbyteorder("="))
    if name is None:
        raise TypeError(f"the IR text form has no element type for numpy dtype {array.dtype}")
    flat = np.ascontiguousarray(array.ravel(), dtype=array.dtype.newbyteorder("="))
    shape = "".join(f"{d}x" for d in array.shape)
    if array.size == 0:
        return f"dense<> : tensor<{shape}{name}>"
    if array.ndim == 0 or (array.size > 1 and _is_splat(flat)):
        body = _format_element(flat[0], flat.dtype)
    else:
        body = _nest([_format_element(x, flat.dtype) for x in flat], array.shape)
    return f"dense<{body}> : tensor<{shape}{name}>"


def _is_splat(flat: np.ndarray) -> bool:
    """All elements bitwise equal (so -0.0 and 0.0 differ, and equal NaNs agree)."""
    rows = flat.view(np.uint8).reshape(flat.size, flat.dtype.itemsize)
    return bool((rows == rows[0]).all())


def _nest(elements: list[str], shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "[" + ", ".join(elements) + "]"
    step = len(elements) // shape[0] if shape[0] else 0
    parts = [_nest(elements[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
    return "[" + ", ".join(parts) + "]"


def _format_element(x: Any, dtype: np.dtype) -> str:
    if dtype == np.bool_:
        return "true" if x else "false"
    if dtype.kind in "iu":
        return str(int(x))
    if not np.isfinite(x):
        bits = _FLOAT_BITS[dtype]
        raw = int(np.asarray(x, dtype=dtype).view(f"u{bits // 8}"))
        return f"0x{raw:0{bits // 4}X}"
    # numpy's str() is the shortest text that reads back to this f16/f32/f64.
    return _mlir_float(str(x))
