"""``dlc generate FILE --weights W --prompt TEXT``: sample text from a trained language model.

The model's first input is a token sequence ``i32[N, T]`` (``T`` static or
a symbol) and its first output the next-token logits at every position,
``[N, T, V]``.  Tokens are the prompt's UTF-8 bytes (so a character model
has ``V = 256``; a byte the vocabulary does not hold is an error).  Each new
token is drawn from ``softmax(logits / temperature)`` at the last position
(``--temperature 0``: the most likely token), with a generator seeded by
``--seed``, and appended.

By default generation runs the model's ``decode`` function with a key/value
cache (``compiler/decode.py``, ``runtime/decode.py``): the prompt is run
once, then each token costs one position's work plus attention over the
cached ones.  The cache holds ``L`` positions (a static ``T``, else
``--context``, else the size of the model's position table, else 64); when it
is full it is re-filled from the last ``L // 2`` tokens.  The first ``L``
tokens are exactly those of the path without a cache; after that the model
sees between ``L / 2`` and ``L`` tokens rather than a sliding window of ``L``.

A model the cache rewrite cannot follow (a ``DecodeError``: an op that mixes
positions other than the causal attention op) is run without a cache, with a
one-line note on stderr.  ``--no-cache`` asks for that path, the reference:
each token runs the whole forward pass over the last ``T`` tokens (a static
``T``, with the window padded after the text, which a causal model never
looks at) or the last ``--context`` tokens (a symbolic ``T``, default 64),
O(T²) attention work per token rather than O(T).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np

from compiler.decode import DecodeError
from compiler.diagnostics import DlRuntimeError

from ..decode import DecodeSession
from ..model import Model, load_model
from .train import add_model_arguments, model_passes

NAME = "generate"
DEFAULT_CONTEXT = 64        # the window of a model whose sequence length is a symbol
HELP = "sample text from a trained language model (tokens are UTF-8 bytes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc generate``."""
    add_model_arguments(parser)
    parser.add_argument("--weights", required=True, metavar="PATH", help="a checkpoint written by dlc train --save")
    parser.add_argument("--prompt", required=True, help="the text to continue (at least one byte)")
    parser.add_argument("--tokens", type=_count, default=200, help="tokens to generate (default 200)")
    parser.add_argument("--temperature", type=_temperature, default=1.0,
                        help="divides the logits before sampling; 0 picks the most likely token (default 1)")
    parser.add_argument("--context", type=_count, default=None,
                        help="tokens the model sees, for a model whose sequence length is a symbol "
                             "(default: the size of its position table with the cache, else 64)")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="run the whole window for every token instead of using a key/value cache "
                             "(the reference path)")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Generate and print the prompt followed by the new text."""
    model = load_model(args.file, seed=args.seed, backend=args.backend, weights=args.weights,
                       passes=model_passes(args),
                       flush_denormals=args.flush_denormals)
    prompt = list(args.prompt.encode("utf-8"))
    tokens = generate(model, prompt, args.tokens, args.temperature, seed=args.seed, context=args.context,
                      cache=args.cache, note=lambda text: sys.stderr.write(f"note: {text}\n"))
    sys.stdout.write(bytes(tokens).decode("utf-8", errors="replace") + "\n")
    return 0


def generate(model: Model, prompt: list[int], count: int, temperature: float, *, seed: int = 0,
             context: int | None = None, cache: bool = True,
             note: Callable[[str], object] | None = None) -> list[int]:
    """``prompt`` followed by ``count`` tokens sampled from ``model`` (see the module docstring):
    with ``cache``, through a :class:`DecodeSession` (falling back, with ``note(text)``, when
    the model cannot be cached), else by a forward pass over the window per token."""
    length, vocab = _shape(model)
    if not prompt:
        raise DlRuntimeError("the prompt is empty: give at least one token")
    outside = [t for t in prompt if t >= vocab]
    if outside:
        raise DlRuntimeError(f"the prompt holds byte {outside[0]}, outside the model's vocabulary of "
                             f"{vocab} tokens (tokens are the prompt's UTF-8 bytes)")
    rng = np.random.default_rng(seed)
    if cache:
        try:
            session = DecodeSession.of(model, context=context if length is None else None,
                                       default_context=DEFAULT_CONTEXT)
        except DecodeError as e:
            if note is not None:
                note(f"generating without a KV cache: {_one_line(e)}")
        else:
            def pick(logits: np.ndarray) -> np.ndarray:
                return np.array([_pick(logits[0].astype(np.float64), temperature, rng)])
            return [int(t) for t in session.generate(np.array([prompt], np.int32), count, pick)[0]]
    window = length if length is not None else (context or DEFAULT_CONTEXT)
    tokens = list(prompt)
    for _ in range(count):
        seen = tokens[-window:]
        x = np.zeros((1, window if length is not None else len(seen)), np.int32)
        x[0, :len(seen)] = seen
        out = model.predict(x)
        logits = (out[0] if isinstance(out, tuple) else out)[0, len(seen) - 1].astype(np.float64)
        tokens.append(_pick(logits, temperature, rng))
    return tokens


def _one_line(e: DecodeError) -> str:
    """``file:line:col: message`` (the location, where there is one)."""
    loc = e.loc
    return f"{loc.file}:{loc.line}:{loc.col}: {e.message}" if loc is not None and loc.line > 0 else e.message


def _shape(model: Model) -> tuple[int | None, int]:
    """The model's sequence length (None: a symbol) and vocabulary size, checked."""
    spec = model.data_spec
    inp = spec.inputs[0]
    out = spec.outputs[0] if spec.outputs else None
    if len(inp.shape) != 2 or not np.issubdtype(inp.dtype, np.integer):
        raise DlRuntimeError(f"dlc generate needs a model whose first input is tokens [N, T] (integers), "
                             f"got {inp.name}: {inp.dsl_str()}")
    if out is None or len(out.shape) != 3 or not isinstance(out.shape[-1], int) \
            or not np.issubdtype(out.dtype, np.floating):
        shown = f"{out.name}: {out.dsl_str()}" if out is not None else "none"
        raise DlRuntimeError(f"dlc generate needs a model whose first output is next-token logits "
                             f"[N, T, V], got {shown}")
    if out.shape[1] != inp.shape[1]:
        raise DlRuntimeError(f"dlc generate needs logits at every input position: output {out.name} is "
                             f"{out.dsl_str()}, input {inp.name} {inp.dsl_str()}")
    length = inp.shape[1] if isinstance(inp.shape[1], int) else None
    return length, int(out.shape[-1])


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """A token: the most likely at temperature 0, else drawn from softmax(logits / temperature)."""
    if not np.isfinite(logits).all():
        raise DlRuntimeError("the model's logits are not finite (NaN or inf): check the weights")
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))
