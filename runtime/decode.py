"""Generation with a key/value cache: :class:`DecodeSession` runs a model's ``decode``
function (``compiler/decode.py``) on new tokens and holds the caches between calls.

``session.feed(tokens)`` takes the next ``S >= 1`` tokens of every sequence (``[N, S]``:
the prompt's prefill, then one token at a time) and returns the logits at those positions
(``[N, S, V]``, the same as ``predict`` gives at those positions of the whole sequence).
Each call costs the new positions' work plus attention over the ``L`` cached positions, not
a forward pass over the window.  The caches hold ``L`` positions (``session.max_len``);
:meth:`DecodeSession.generate` re-fills them from the last ``L // 2`` tokens when they are
full (see its docstring).  Native code updates the caches in their own buffers (the
function's ``inplace`` pairs); the interpreter returns new arrays, which the session keeps.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np

from compiler.decode import DECODE, decode_module
from compiler.diagnostics import DlRuntimeError

from .model import Model

_SESSIONS: weakref.WeakKeyDictionary[Model, dict[tuple, DecodeSession]] = weakref.WeakKeyDictionary()


class DecodeSession:
    """A model's ``decode`` compiled once (on the model's backend), its caches and position.

    :meth:`of` keeps one session per model and context, so that repeated generation
    (``dlc generate``'s function called in a loop, a server) derives and loads ``decode`` once;
    a session holds its caches and position, so each thread gets its own."""

    @classmethod
    def of(cls, model: Model, *, context: int | None = None,
           default_context: int | None = None) -> DecodeSession:
        """The batch-1 session of ``model`` for this context, made at the first call (the
        session reads the model's weights at each call, so training in between is seen)."""
        sessions = _SESSIONS.setdefault(model, {})
        key = (context, default_context, model.backend.name, threading.get_ident())
        session = sessions.get(key)
        if session is None:
            session = sessions[key] = cls(model, context=context, default_context=default_context)
        return session

    def __init__(self, model: Model, *, context: int | None = None, default_context: int | None = None,
                 batch: int = 1, backend: str | None = None):
        """``context``: the positions the caches hold (default: a static ``T``, else the size
        of the model's position table, else ``default_context``); ``batch``: sequences
        decoded side by side; ``backend``: default the model's."""
        if batch < 1:
            raise DlRuntimeError(f"the batch must be at least 1 sequence, got {batch}")
        module, self.signature = decode_module(model.module, max_len=context, default_len=default_context)
        self.model = model
        self.max_len = self.signature.max_len
        self.batch = batch
        self.backend = model.backend_for(module, backend)
        self._call: Callable[[list[np.ndarray]], list[np.ndarray]] = self.backend.caller(DECODE)
        self._outputs = len(self.signature.outputs)
        self.caches = [np.zeros(self._shape(t.shape), t.dtype.np) for _, t in self.signature.caches]
        self.pos = 0

    def _shape(self, shape: tuple) -> tuple[int, ...]:
        """A cache's shape with the batch dim bound (any other symbol is unknowable here)."""
        out = []
        for d in shape:
            if d == self.signature.batch:
                out.append(self.batch)
            elif isinstance(d, int):
                out.append(d)
            else:
                raise DlRuntimeError(f"a KV cache of shape {list(shape)} has a dim {d} other than the batch")
        return tuple(out)

    def reset(self) -> None:
        """Forget every cached position (the caches' contents are masked out, so they stay)."""
        self.pos = 0

    def feed(self, tokens: np.ndarray) -> np.ndarray:
        """The logits ``[N, S, V]`` at the next ``S`` positions given their tokens ``[N, S]``;
        the tokens' keys and values join the caches."""
        x = np.ascontiguousarray(tokens, dtype=np.int32)
        if x.ndim != 2 or x.shape[0] != self.batch:
            raise DlRuntimeError(f"decode takes tokens [{self.batch}, S], got shape {list(x.shape)}")
        count = x.shape[1]
        if count == 0:
            raise DlRuntimeError("decode needs at least one new token (S >= 1), got none")
        if self.pos + count > self.max_len:
            raise DlRuntimeError(f"{count} new tokens at position {self.pos} overflow the cache of "
                                 f"{self.max_len} positions: reset() or generate() re-fills it")
        pos = np.array(self.pos, np.int32)
        weights = self.model._tensors[:self.model._n_model]     # predict's parameters and state, as now
        outs = self._call([*weights, x, pos, *self.caches])
        self.caches = list(outs[self._outputs:])
        self.pos += count
        return np.array(outs[0])            # native code reuses its output buffer

    def generate(self, prompts: np.ndarray, count: int, pick: Callable[[np.ndarray], np.ndarray]
                 ) -> np.ndarray:
        """``prompts [N, P]`` followed by ``count`` tokens each, the next chosen by
        ``pick(logits [N, V]) -> [N]`` from the logits at the last position.

        The model sees the last ``L`` tokens at most.  Up to ``L`` tokens in all, that is
        exactly what a forward pass over the whole sequence sees, so the tokens are those of
        generation without a cache.  When the cache is full it is re-filled from the last
        ``L // 2`` tokens (one prefill), so from then on the model sees between ``L // 2`` and
        ``L`` tokens where a sliding window would see ``L``: a trade of a little context for
        O(L) work per token instead of a forward pass over ``L`` positions.
        """
        tokens = np.asarray(prompts, np.int32)
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise DlRuntimeError(f"the prompts must be [N, P] tokens with P >= 1, got shape {list(tokens.shape)}")
        if tokens.shape[0] != self.batch:
            raise DlRuntimeError(f"the session decodes {self.batch} sequence(s), got {tokens.shape[0]} prompts")
        self.reset()
        if count == 0:
            return tokens.copy()
        logits = self.feed(tokens[:, -self.max_len:])[:, -1]
        out = [tokens]
        for i in range(count):
            nxt = np.asarray(pick(logits), np.int32).reshape(self.batch, 1)
            out.append(nxt)
            if i == count - 1:
                break
            if self.pos == self.max_len:                 # full: keep the last L // 2 tokens
                self.reset()
                recent = np.concatenate(out, axis=1)[:, -max(self.max_len // 2, 1):]
                logits = self.feed(recent)[:, -1]
            else:
                logits = self.feed(nxt)[:, -1]
        return np.concatenate(out, axis=1)


