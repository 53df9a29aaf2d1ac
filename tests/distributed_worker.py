"""One rank of the distributed-training tests (tests/test_distributed.py runs it under mpirun).

    mpirun -n 2 python tests/distributed_worker.py MODE MODEL.dl OUT_DIR [BATCHNORM_MODEL.dl]

MODE ``train``: train distributed (a per-rank batch of 4, two epochs), then
each rank writes its weights to ``OUT_DIR/rank<r>.npz``; rank 0 also trains
one process alone with the global batch (8) and writes ``OUT_DIR/single.npz``.
With BATCHNORM_MODEL, each rank also trains that model with and without
``sync_batch_stats`` and writes its model state to ``OUT_DIR/{synced,local}<r>.npz``.
MODE ``kill`` / ``stop``: rank 1 kills (SIGKILL) or stops (SIGSTOP) itself at
the end of the first epoch; the other rank must not hang.  MODE ``disagree``:
rank 1 asks for another batch size; each rank prints the error as dlc does.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from compiler.diagnostics import DlError
from runtime.distributed import Distributed, rank_and_size
from runtime.model import load_model

PER_RANK_BATCH = 4


def data() -> tuple[np.ndarray, np.ndarray]:
    """25 samples: the last global batch holds one, so rank 0 has no rows in that step."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(25, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)


def main(mode: str, model_path: str, out: str, batchnorm_path: str | None = None) -> None:
    rank, size = rank_and_size()
    x, y = data()
    model = load_model(model_path, seed=3)
    if mode == "train":
        history = model.fit(x, y, epochs=2, batch_size=PER_RANK_BATCH, verbose=0, distributed=True)
        np.savez(os.path.join(out, f"rank{rank}.npz"), step=model.step, loss=history.history["loss"],
                 **model.weights)
        if rank == 0:
            single = load_model(model_path, seed=3)
            alone = single.fit(x, y, epochs=2, batch_size=PER_RANK_BATCH * size, verbose=0)
            np.savez(os.path.join(out, "single.npz"), step=single.step, loss=alone.history["loss"],
                     **single.weights)
        for sync in (True, False) if batchnorm_path else ():
            bn = load_model(batchnorm_path, seed=3)
            bn.fit(x, y, epochs=1, batch_size=PER_RANK_BATCH, verbose=0,
                   distributed=Distributed(sync_batch_stats=sync))
            np.savez(os.path.join(out, f"{'synced' if sync else 'local'}{rank}.npz"), **bn.model_state)
        return
    if mode == "disagree":
        try:
            model.fit(x, y, epochs=1, batch_size=PER_RANK_BATCH + rank, verbose=0, distributed=True)
        except DlError as e:
            print(e.render(), file=sys.stderr)
            sys.exit(1)
        return
    sig = signal.SIGKILL if mode == "kill" else signal.SIGSTOP

    def end_of_epoch(epoch: int, logs: dict[str, float]) -> None:
        if rank == 1:
            os.kill(os.getpid(), sig)
    model.fit(x, y, epochs=3, batch_size=PER_RANK_BATCH, verbose=0, on_epoch_end=end_of_epoch,
              distributed=Distributed(timeout=3))
    print(f"rank {rank}: training finished (it should not have)", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
