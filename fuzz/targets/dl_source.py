"""``.dl`` source through the frontend, and what compiles through native code.

Cases: generated programs (``fuzz/dlgen.py``), generated programs with a few
token edits, deep ones (long let chains, deep nesting, call chains), and
token edits of the example files and of ``tests/diagnostics/*.dl``.  The oracle:

* ``compile_source`` (the path of ``dlc check``) raises nothing but a
  :class:`DlError`;
* a program that compiles is compiled to native code (default pipeline,
  random codegen options; a model also gets its training step) and every
  function runs natively and in the interpreter on random inputs
  (``fuzz/oracle.py``): the results agree.  The interpreter itself raises
  nothing but a :class:`DlError` either.

The case's first line carries its directives: ``seed`` (inputs and codegen
options) and ``trusted`` (the functions whose discontinuous ops the
generator proved safe to compare; others are compared only when they have
none on floats).
"""

from __future__ import annotations

import random

from compiler.ir.core import Module

from ..case import REPO_ROOT, directives, int_directive
from ..differential import check_module, widened
from ..dlgen import deep_program, generate_program
from ..mutate import mutate

NAME = "dl_source"
SUFFIX = ".dl"
TIMEOUT = 60.0
FILE = "fuzz.dl"

SEED_FILES = sorted([*(REPO_ROOT / "examples").glob("*.dl"), *(REPO_ROOT / "tests" / "diagnostics").glob("*.dl")])
POOL = ("fn", "let", "return", "model", "input", "target", "param", "output", "loss", "optimizer",
        "metrics", "grad", "value_and_grad", "wrt", "dense", "relu", "softmax", "sum", "mean", "max",
        "argmax", "cast", "reshape", "transpose", "broadcast_to", "matmul", "select", "one_hot",
        "iota", "constant", "dim_size", "sign", "log", "exp", "sqrt", "x", "y", "w", "N", "M", "f32",
        "f64", "i32", "i64", "bool", "0", "1", "2.5", "-3", "true", "false", "\"s\"", "(", ")", "[",
        "]", "{", "}", ",", ":", "=", "==", "->", "+", "-", "*", "/", "@", "**", "<", ">=", "axis=",
        "axes=", "keepdims=", "perm=", "[]", "f32[]", "f32[0]", "f32[N, 0]", "activation=")


def generate(rng: random.Random) -> tuple[str, str]:
    """A case: (text, mode)."""
    seed = rng.randrange(2**31)
    roll = rng.random()
    if roll < 0.6:
        program = generate_program(rng)
        trusted = ",".join(sorted(program.trusted))
        return f"# fuzz: seed={seed} trusted={trusted}\n{program.text}", "generated"
    if roll < 0.72:
        text = mutate(generate_program(rng).text, rng, rng.randint(1, 4), POOL)
        return f"# fuzz: seed={seed}\n{text}", "generated, mutated"
    if roll < 0.75:
        return f"# fuzz: seed={seed}\n{deep_program(rng)}", "deep"
    source = rng.choice(SEED_FILES)
    text = mutate(source.read_text(), rng, rng.randint(1, 6), POOL)
    return f"# fuzz: seed={seed} from={source.name}\n{text}", "mutated example"


def run(text: str, stats: dict[str, int]) -> None:
    """Compile ``text``; when it compiles, check native code against the interpreter."""
    module = prepare(text)
    stats["compiled"] = 1
    if any(f.ops for f in module.functions):
        trusted = set(directives(text).get("trusted", "").split(","))
        check_module(module, int_directive(text, "seed"), trusted, wider(text), stats)


def prepare(text: str) -> Module:
    """The module to compile natively: the frontend's, plus the training step of a model."""
    from compiler.train_step import build_train_step
    from frontend_dsl.api import compile_source

    module = compile_source(text, FILE)
    if "model" in module.attrs:
        build_train_step(module)
    return module


def wider(text: str) -> Module | None:
    """:func:`prepare` of the same program in f64 (the oracle's accuracy yardstick), or None."""
    return widened(text, r"\bf32\b", prepare)
