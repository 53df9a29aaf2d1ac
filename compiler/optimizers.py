"""The optimizers a model can declare: names, hyperparameters and Keras defaults.

The update rules (in dl ops) live beside each definition; see
``compiler/training.py`` for how a training step uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(eq=False)
class OptimizerDef:
    name: str
    hyperparams: dict[str, float | bool]   # name -> Keras default
    doc: str = ""
    aliases: dict[str, str] = field(default_factory=lambda: {"lr": "learning_rate"})
    update: Callable | None = None          # attached by the training module

    def resolve(self, given: dict[str, float | bool]) -> dict[str, float | bool]:
        """Hyperparameters with aliases applied and defaults filled.

        Raises ``KeyError`` naming an unknown hyperparameter.
        """
        out = dict(self.hyperparams)
        for key, value in given.items():
            key = self.aliases.get(key, key)
            if key not in self.hyperparams:
                raise KeyError(key)
            out[key] = value
        return out


OPTIMIZERS: dict[str, OptimizerDef] = {
    o.name: o for o in [
        OptimizerDef("sgd", {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
                     "Stochastic gradient descent, with optional (Nesterov) momentum."),
        OptimizerDef("rmsprop", {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0,
                                 "epsilon": 1e-7, "centered": False},
                     "RMSprop: divide the gradient by a running RMS of recent gradients."),
        OptimizerDef("adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                              "epsilon": 1e-7},
                     "Adam: bias-corrected first and second moment estimates."),
        OptimizerDef("adamw", {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9,
                               "beta_2": 0.999, "epsilon": 1e-7},
                     "AdamW: Adam with decoupled weight decay."),
    ]
}
