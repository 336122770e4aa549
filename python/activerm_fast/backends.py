"""The compiled backends: `_core` (CPU, always built) and `_cuda` (when built with a CUDA compiler).

A kernel runs on the device its inputs live on; this module maps a device to the extension
module, the stream handle to pass, and reports how the package was built.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import metadata
from types import ModuleType
from typing import Any

import torch


def _load_core() -> ModuleType:
    """Import _core with its OpenMP threads sleeping, not spinning, when idle.

    _core's OpenMP runtime shares the cores with PyTorch's own thread pool. Idle threads
    that spin starve the other pool's working threads: on two busy cores a greedy step ran
    six times slower. libgomp reads OMP_WAIT_POLICY once, when it loads, so the variable is
    set for that moment only (an explicit setting of the user's wins).
    """
    chosen = os.environ.get("OMP_WAIT_POLICY")
    if chosen is None:
        os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        from . import _core as module
    finally:
        if chosen is None:
            del os.environ["OMP_WAIT_POLICY"]
    return module


_core = _load_core()

_cuda: ModuleType | None
try:  # the CUDA module exists only when CMake found a CUDA compiler
    from . import _cuda
except ImportError:
    _cuda = None


def backend_for(device: torch.device, name: str = "features") -> ModuleType:
    """The extension module that runs kernels for tensors on ``device``."""
    if device.type == "cpu":
        return _core
    if device.type == "cuda":
        if _cuda is None:
            raise ValueError(
                f"{name} is on {device} but activerm_fast was built without CUDA support "
                "(no CUDA compiler was found at build time); pass CPU arrays or rebuild "
                "with ACTIVERM_FAST_CUDA=ON"
            )
        return _cuda
    raise ValueError(f"{name} is on {device}; only CPU and CUDA devices are supported")


def stream_for(device: torch.device) -> int:
    """The raw stream handle kernels on ``device`` are launched on (0 on the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.current_stream(device).cuda_stream)
    return 0


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make ``device`` the current CUDA device while kernels are launched on it."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


def gpu_usable() -> bool:
    """Whether the CUDA backend was built and a GPU is visible to it and to torch."""
    return _cuda is not None and _cuda.device_count() > 0 and torch.cuda.is_available()


def build_info() -> dict[str, Any]:
    """How this installation was built and what it can run on."""
    return {
        "version": metadata.version("activerm_fast"),
        "compiler": _core.compiler,
        "cuda_compiler": None if _cuda is None else _cuda.compiler,
        "openmp_threads": int(_core.max_threads()),
        "cuda_built": _cuda is not None,
        "gpu_usable": gpu_usable(),
        "torch": torch.__version__,
    }
