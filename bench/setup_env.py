"""Create or refresh the bench's own virtual environment (``bench/.venv``).

The peers (PyTorch, JAX, threadpoolctl) are large and not dependencies of
dlc, so they live in a separate venv that also holds dlc installed editable.
PyTorch is pinned to the CPU build ``2.13.0+cpu``: a plain ``torch`` would pull
several GB of CUDA libraries.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"

PEER_REQUIREMENTS = ("torch==2.13.0+cpu", "jax", "jaxlib", "threadpoolctl")


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    """The interpreter of the bench venv (it may not exist yet)."""
    return venv_dir / "bin" / "python"


def setup(venv_dir: Path = VENV_DIR) -> Path:
    """Create ``venv_dir`` if missing, then install dlc (editable) and the peers.

    Re-running refreshes the installs.  Returns the venv's interpreter.
    Raises ``subprocess.CalledProcessError`` if pip fails.
    """
    if not venv_python(venv_dir).exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    python = str(venv_python(venv_dir))
    pip = [python, "-m", "pip", "install", "--upgrade"]
    print("installing dlc (editable) and the peers: " + " ".join(PEER_REQUIREMENTS), flush=True)
    subprocess.run([*pip, "pip"], check=True)
    subprocess.run([*pip, "-e", str(REPO_ROOT), *PEER_REQUIREMENTS], check=True)
    return venv_python(venv_dir)


if __name__ == "__main__":
    setup()
    sys.exit(0)
