"""``dlc run FILE --fn NAME --input x=x.npy ...``: call one function on numpy inputs.

Inputs are ``NAME=VALUE`` where VALUE is a ``.npy`` file, a ``.npz`` file
(its only array, or the array called NAME), or a literal: a number,
``true``/``false``, or a nested list such as ``[[0, 1], [1, 0]]``.  Values are
converted to the parameter's dtype when no information is lost in kind
(float64 -> f32 is fine, 1.5 -> i32 is an error).

Results are printed (numpy's summarized form) or saved with ``--output``
(``.npz`` with one array per output, or ``.npy`` for a single output).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.core import Function, Module, Value
from compiler.ir.types import DType, number_problem

from . import pick_function
from .pass_flags import add_pass_arguments, load_for_passes, run_passes

NAME = "run"
HELP = "run a function of a .dl file (or IR text) on inputs: native code, or --interp"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc run``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--fn", metavar="NAME",
                        help="the function to run (default: predict, or the only function)")
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=VALUE",
                        help="an argument: NAME=file.npy, NAME=file.npz, NAME=1.5 or NAME=[[1,2],[3,4]]; "
                             "repeat for each parameter")
    parser.add_argument("--interp", action="store_true",
                        help="run the reference interpreter instead of compiled native code")
    parser.add_argument("--output", "-o", metavar="PATH",
                        help="save the results to PATH (.npz, or .npy for one result) instead of printing")
    add_pass_arguments(parser)


def execute(module: Module, func: Function, inputs: dict[str, np.ndarray],
            args: argparse.Namespace) -> list[np.ndarray]:
    """Evaluate ``func`` on ``inputs``: native code (runtime.compile), or the
    reference interpreter with ``--interp``."""
    if getattr(args, "interp", False):
        from compiler.ir.interpreter import interpret

        return interpret(func, inputs)
    from runtime.compiled import compile as compile_module

    compiled = compile_module(Module([func], dict(module.attrs)))
    result = compiled[func.name](**inputs)
    return list(result) if isinstance(result, tuple) else [result]


def run(args: argparse.Namespace) -> int:
    """Run the function and print or save its results."""
    module = run_passes(load_for_passes(args.file, args), args)
    func = pick_function(module, args.fn, args.file)
    inputs = parse_inputs(func, args.input)
    results = execute(module, func, inputs, args)
    names = result_names(func)
    if args.output:
        save_results(args.output, names, results)
        print(f"wrote {args.output} ({len(results)} array{'s' if len(results) != 1 else ''})")
    else:
        print_results(names, results)
    return 0


# ---------------------------------------------------------------------------
# Inputs


def parse_inputs(func: Function, items: list[str]) -> dict[str, np.ndarray]:
    """``NAME=VALUE`` items as arrays of the parameters' dtypes; every parameter needed."""
    params = {p.name: p for p in func.params if p.name is not None}
    given: dict[str, np.ndarray] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name or not text:
            raise DlError(f"--input expects NAME=VALUE (a .npy/.npz file, a number or a list), got '{item}'")
        if name not in params:
            raise DlError(f"'{func.name}' has no parameter '{name}' "
                          f"(parameters: {', '.join(params) or 'none'})")
        if name in given:
            raise DlError(f"--input {name} given twice")
        given[name] = convert_input(read_value(name, text), params[name])
    missing = [p for p in func.params if p.name not in given]
    if missing:
        listed = ", ".join(f"{p.name}: {p.type.dsl_str()}" for p in missing)
        raise DlError(f"missing --input for {len(missing)} parameter{'s' if len(missing) != 1 else ''} "
                      f"of '{func.name}': {listed}")
    return given


def read_value(name: str, text: str) -> np.ndarray:
    """An input value: a .npy / .npz file, or a JSON-style literal."""
    path = Path(text)
    if path.suffix in (".npy", ".npz") or path.exists():
        return _load_array(name, path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise DlError(f"input '{name}': '{text}' is neither a file nor a number or list") from None
    try:
        array = np.asarray(value)
    except ValueError:
        raise DlError(f"input '{name}': the list is not rectangular") from None
    if array.dtype == object and all(type(v) is int for v in array.flat):
        problem = number_problem(max(array.flat, key=abs), DType.i64)
        raise DlError(f"input '{name}': {problem}")
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise DlError(f"input '{name}': expected numbers, got {text}")
    return array


def _load_array(name: str, path: Path) -> np.ndarray:
    from runtime.data import read_arrays

    if not path.is_file():
        raise DlError(f"input '{name}': no such file: {path}")
    data = read_arrays(path)
    if isinstance(data, dict):
        if name in data:
            return data[name]
        if len(data) == 1:
            return next(iter(data.values()))
        raise DlError(f"input '{name}': {path} holds {', '.join(data) or 'no arrays'}; "
                      f"none is called '{name}'")
    return data


def convert_input(array: np.ndarray, param: Value) -> np.ndarray:
    """``array`` as the parameter's dtype, refusing conversions that change the kind of number."""
    want = param.type.dtype.np
    ok = array.dtype == want or (
        array.dtype.kind != "b" and want.kind != "b"
        and np.can_cast(array.dtype, want, casting="same_kind"))
    if not ok:
        raise DlError(f"input '{param.name}' must be {param.type.dtype.dsl_name} "
                      f"({param.type.dsl_str()}), got {array.dtype} values")
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size and array.dtype.kind in "iuf":
        for extreme in (finite.min(), finite.max()):
            problem = number_problem(extreme.item(), param.type.dtype)
            if problem is not None:
                raise DlError(f"input '{param.name}' ({param.type.dsl_str()}): {problem}")
    return np.asarray(array, dtype=want, order="C")  # ascontiguousarray would make 0-d arrays 1-d


# ---------------------------------------------------------------------------
# Results


def result_names(func: Function) -> list[str]:
    names = list(func.output_names) + [None] * (len(func.outputs) - len(func.output_names))
    out: list[str] = []
    for i, n in enumerate(names):
        name = n or f"result{i}"
        out.append(name if name not in out else f"{name}_{i}")
    return out


def print_results(names: list[str], results: list[np.ndarray]) -> None:
    """Each result as ``name: f32[2, 3]`` and numpy's summarized text."""
    with np.printoptions(threshold=200, edgeitems=4, precision=6, suppress=True):
        for name, array in zip(names, results):
            dims = ", ".join(str(d) for d in array.shape)
            dtype = "bool" if array.dtype == np.bool_ else array.dtype.name.replace("float", "f") \
                .replace("int", "i")
            print(f"{name}: {dtype}[{dims}]")
            print(np.array2string(np.asarray(array)))


def save_results(path: str, names: list[str], results: list[np.ndarray]) -> None:
    """``.npz`` with one array per result, or ``.npy`` for exactly one."""
    try:
        if path.endswith(".npy"):
            if len(results) != 1:
                raise DlError(f"{path}: a .npy file holds one array but there are {len(results)} "
                              "results; use .npz")
            np.save(path, results[0])
        else:
            if not path.endswith(".npz"):
                raise DlError(f"--output must end in .npz or .npy, got {path}")
            # cast: mypy matches a str-keyed ** against savez's allow_pickle: bool
            np.savez(path, **cast(dict[str, Any], dict(zip(names, results))))
    except OSError as e:
        raise DlError(f"cannot write {path}: {e.strerror or e}") from None
