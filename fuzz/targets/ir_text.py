"""dl IR text through the IR parser and verifier, and what verifies through native code.

Cases are real modules printed by ``compiler/ir/printer.py`` -- generated
programs as the frontend lowers them, after the default pipeline, with
gradients deferred, or with a model's training step; with or without
locations -- then mutated: tokens, numbers, dims, types, attributes, op
names.  The oracle:

* ``parse_module`` (which verifies) raises nothing but a :class:`DlError`;
* a module that parses prints, parses and prints the same again;
* it compiles natively and agrees with the interpreter (``fuzz/differential.py``;
  no function is trusted: only those without float discontinuities are compared).
"""

from __future__ import annotations

import random
import re

from compiler.diagnostics import DlError
from compiler.ir.core import Module
from compiler.ops import OPS

from ..case import int_directive
from ..differential import check_module, widened
from ..dlgen import generate_program
from ..mutate import mutate
from ..oracle import Mismatch

NAME = "ir_text"
SUFFIX = ".mlir"
TIMEOUT = 60.0
FILE = "fuzz.mlir"

POOL = (("tensor<?xf32>", "tensor<0x3xf32>", "tensor<4294967296xf32>", "tensor<?x?xf32, \"N,N\">",
         "tensor<f32>", "tensor<i1>", "tensor<3xi64>", "tensor<?x3xf64, \"N\">", "dense<1.0>",
         "dense<[1.0, 2.0]>", "dense<0x7FC00000>", "dense<>", "i1", "f64", "i64", "i32", "f16",
         "%0", "%1", "%x", "#0", "#1", "%0:2", "@f0", "@", "{axes = [0]}", "{keepdims = true}",
         "{axis = -1 : i64}", "{perm = [1, 0]}", "{shape = [\"N\", 3]}", "loc(unknown)",
         "loc(\"fuzz.dl\":1:1)", "func.return", "func.func", "module", "attributes", "unit", ":",
         "->", "(", ")", "<", ">", "x", "?", "\"", ",", "=", "[]", "{}", "-1", "0", "1", "3",
         "9223372036854775807")
        + tuple(f"\"dl.{name}\"" for name in OPS))


def generate(rng: random.Random) -> tuple[str, str]:
    """A case: a printed module, mutated (text, mode)."""
    seed = rng.randrange(2**31)
    text, stage = base_text(rng)
    if rng.random() < 0.5:
        return f"// fuzz: seed={seed}\n{mutate(text, rng, rng.randint(1, 4), POOL)}", f"mutated {stage}"
    for _ in range(rng.randint(1, 2)):
        text = rng.choice(IR_EDITS)(text, rng)
    return f"// fuzz: seed={seed}\n{text}", f"edited {stage}"


def base_text(rng: random.Random) -> tuple[str, str]:
    """A generated program's module, printed at a random stage: (text, stage)."""
    from compiler.ir.printer import print_module
    from compiler.passes import run_pipeline
    from compiler.train_step import build_train_step
    from frontend_dsl.api import compile_source

    for _ in range(5):
        program = generate_program(rng)
        stage = rng.choice(["frontend", "frontend", "default pipeline", "deferred gradients", "training step"])
        try:
            module = compile_source(program.text, "gen.dl", defer_grads=stage == "deferred gradients")
            if stage == "default pipeline":
                module = run_pipeline(module, "default")
            elif stage == "training step" and "model" in module.attrs:
                build_train_step(module)
        except DlError:
            continue
        return print_module(module, debug_locations=rng.random() < 0.5), stage
    return "module {\n}\n", "empty"


# ---------------------------------------------------------------------------
# Edits that keep the text well-formed, so the verifier and what follows it get the case

OP_NAME = re.compile(r'"dl\.([a-z_]+)"')
TYPE_DIM = re.compile(r"(?<=[<x])([0-9]+)(?=x)")
DENSE = re.compile(r"dense<([^<>]*)>")
ATTR_INT = re.compile(r"(?<== )(-?[0-9]+)(?= : i64|[,\]}])")
VALUE_USE = re.compile(r"(?<=[(, ])%([A-Za-z0-9_$.]+)(?=[,)])")
DENSE_VALUES = ("nan", "-nan", "inf", "-inf", "0x7FC00000", "0x7F800000", "-0.0", "3.4e38",
                "1.0e-45", "1.0e308", "0", "-1", "2147483647", "[1.0, 2.0]", "[[1.0], [2.0]]", "true")


def swap_op(text: str, rng: random.Random) -> str:
    """One op replaced by another that takes as many operands (``dl.exp`` -> ``dl.log``)."""
    found = [m for m in OP_NAME.finditer(text) if m.group(1) in OPS]
    if not found:
        return text
    m = rng.choice(found)
    arity = len(OPS[m.group(1)].operands)
    others = [name for name, op in OPS.items() if len(op.operands) == arity and name != m.group(1)]
    if not others:
        return text
    return text[:m.start(1)] + rng.choice(others) + text[m.end(1):]


def change_dim(text: str, rng: random.Random) -> str:
    """A static dim changed, in one type or in every type that has it."""
    found = list(TYPE_DIM.finditer(text))
    if not found:
        return text
    m = rng.choice(found)
    new = rng.choice(["0", "1", "2", "7", "65536", "4294967297"])
    if rng.random() < 0.5:
        return text[:m.start()] + new + text[m.end():]
    return TYPE_DIM.sub(lambda d: new if d.group() == m.group() else d.group(), text)


def change_dtype(text: str, rng: random.Random) -> str:
    """One element type changed, here or everywhere."""
    old, new = rng.sample(["f32", "f64", "i32", "i64", "i1"], 2)
    if rng.random() < 0.5:
        return re.sub(rf"x{old}>|<{old}>", lambda m: m.group().replace(old, new), text)
    spots = [m.start() for m in re.finditer(rf"(?<=[x<]){old}(?=>)", text)]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + new + text[i + len(old):]


def change_constant(text: str, rng: random.Random) -> str:
    """A dense constant's value replaced by a boundary value."""
    found = list(DENSE.finditer(text))
    if not found:
        return text
    m = rng.choice(found)
    return text[:m.start(1)] + rng.choice(DENSE_VALUES) + text[m.end(1):]


def change_attr_int(text: str, rng: random.Random) -> str:
    """An integer attribute (axis, axes, depth, a dim of a shape) changed."""
    found = list(ATTR_INT.finditer(text))
    if not found:
        return text
    m = rng.choice(found)
    return text[:m.start()] + str(rng.choice([-3, -2, -1, 0, 1, 2, 3, 8])) + text[m.end():]


def swap_operand(text: str, rng: random.Random) -> str:
    """One operand replaced by another value of the module."""
    found = list(VALUE_USE.finditer(text))
    if len(found) < 2:
        return text
    m, other = rng.sample(found, 2)
    return text[:m.start(1)] + other.group(1) + text[m.end(1):]


IR_EDITS = (swap_op, swap_op, change_dim, change_dtype, change_constant, change_attr_int, swap_operand)


def run(text: str, stats: dict[str, int]) -> None:
    """Parse (and verify); check the round trip; compile and compare natively."""
    module = parse(text)
    stats["parsed"] = 1
    check_round_trip(module)
    if any(f.ops for f in module.functions):
        check_module(module, int_directive(text, "seed"), set(), wider(text), stats)


def parse(text: str) -> Module:
    from compiler.ir.parser import parse_module

    return parse_module(text, FILE)


def check_round_trip(module: Module) -> None:
    """print(parse(print(m))) == print(m), locations included."""
    from compiler.ir.printer import print_module

    printed = print_module(module, debug_locations=True)
    again = print_module(parse(printed), debug_locations=True)
    if again != printed:
        raise Mismatch("round trip", f"printing the parsed module and parsing it again changes it:\n"
                       f"--- first\n{printed}\n--- second\n{again}")


def wider(text: str) -> Module | None:
    """The module with f32 widened to f64 (the oracle's accuracy yardstick), or None."""
    return widened(text, r"f32\b", parse)
