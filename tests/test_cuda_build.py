"""The CUDA backend is built wherever a CUDA compiler is, and imports without a GPU or driver."""

from __future__ import annotations

import ctypes.util
import os
import shutil

import pytest
import torch

import activerm_fast as arm


def has_nvidia_driver() -> bool:
    """Whether an NVIDIA kernel driver or its user-space library is on this machine."""
    return (
        os.path.exists("/proc/driver/nvidia/version")
        or ctypes.util.find_library("cuda") is not None
    )


def cuda_expected() -> bool:
    forced_off = os.environ.get("ACTIVERM_FAST_CUDA", "AUTO").upper() == "OFF"
    return shutil.which("nvcc") is not None and not forced_off


def test_cuda_backend_built_when_nvcc_is_available():
    if not cuda_expected():
        pytest.skip("no nvcc on PATH (or ACTIVERM_FAST_CUDA=OFF): _cuda is not expected")
    assert arm.build_info()["cuda_built"], (
        "nvcc is on PATH but activerm_fast was installed without its _cuda module; "
        "reinstall and check the CMake output for 'building _core and _cuda'"
    )


def test_cuda_module_reports_devices_without_failing():
    if not arm.build_info()["cuda_built"]:
        pytest.skip("activerm_fast was built without the CUDA backend")
    from activerm_fast import _core, _cuda

    # On a machine with no driver the statically linked runtime must report 0, not raise.
    count = _cuda.device_count()
    assert isinstance(count, int) and count >= 0
    assert _cuda.device_count() == count  # the failed driver probe left no sticky error
    assert _cuda.backend == "cuda"
    assert _cuda.compiler.startswith("NVIDIA")
    assert _cuda.runtime_version() >= 11000
    assert _cuda.driver_version() >= 0
    driver = _cuda.driver_version()
    if not has_nvidia_driver():
        # no driver here: the runtime finds none and no device, and agrees with torch
        assert driver == 0 and count == 0
        assert torch.cuda.device_count() == 0 and not torch.cuda.is_available()
    else:
        assert driver >= 10000  # e.g. 12040 for 12.4
    if torch.cuda.is_available():  # a CUDA build of torch sees the same devices
        assert count == torch.cuda.device_count()
    assert arm.build_info()["gpu_usable"] == (count > 0 and torch.cuda.is_available())
    # the CUDA engine's workspace holds the CPU's buffers plus its per-block sweep partials
    sizes = {}
    for module in (_cuda, _core):
        features = module.FeatureView(0, module.feature_dtypes["float32"], 1000, 64)
        pairs = module.PairView(0, False, 10**8)
        problem = module.GreedyProblem(features, 3, 0, pairs, 0)
        sizes[module.backend] = module.greedy_workspace_bytes(problem)
    assert sizes["cuda"] > sizes["cpu"] > 8 * 3 * (1000 + 3 * 64)
