"""Imported before anything else in the package: loads torch, and with it the one OpenMP runtime
of the process, then ``_core`` bound to that runtime, with idle OpenMP threads sleeping rather
than spinning.

One runtime. On Linux ``_core`` is linked without an OpenMP library (CMakeLists.txt), so a wheel
neither bundles one nor makes the loader map the system's ``libgomp.so.1`` beside torch's copy,
which older torch wheels name ``libgomp-<hash>.so.1``. Its ``GOMP_*``/``omp_*`` symbols bind to
the runtime torch's own extension resolves them to, whatever that file is called. Python loads
extensions privately (``RTLD_LOCAL``), so that runtime, and only it, is reopened with
``RTLD_GLOBAL`` before ``_core`` is imported (torch's wheels make it global themselves, through
``libtorch_global_deps``, but other builds of torch need not).

Passive waiting. The reward model's training is thousands of small parallel regions. Threads
that spin while idle take the cores from the working threads of the next region, which on a busy
machine waits for them at its barrier. A short spin before sleeping (``GOMP_SPINCOUNT=10000``)
sped up a lone fit by about a tenth, but slowed a short ``simulate`` (its worker processes
share the cores) and, beside a busy process, doubled a small selection's time
(``bench/bench_wait_policy.py``). libgomp reads OMP_WAIT_POLICY once, when it loads, which is
when torch is first imported: the variable is set to ``passive`` for that moment only, unless
the user chose a policy. A program that imported torch before this package keeps its own
setting.

Products that give the same bits on any number of threads. MKL (torch's BLAS on x86-64) may
split a product's sums across threads, so they, and with them the reward heads' fit, change by
rounding with the thread count: on an Intel Xeon a ``simulate --jobs 2`` worker (one thread)
fitted other heads than a serial run (two threads), and ``dopt-topk`` then picked otherwise
among near-ties. MKL's strict conditional numerical reproducibility (``MKL_CBWR=AUTO,STRICT``)
keeps its products the same bits for any thread count. MKL reads the variable at its first
call, after torch loads, so it is set for the process (and the workers it spawns) unless the
user chose a mode; a program that ran a product before importing this package keeps MKL's
default.
"""

from __future__ import annotations

import ctypes
import os
import sys


class _DlInfo(ctypes.Structure):
    """glibc's ``Dl_info``: what ``dladdr`` says about an address."""

    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def torch_openmp_runtime() -> str:
    """The path of the OpenMP runtime that torch's extension calls (torch is imported below)."""
    torch_extension = ctypes.CDLL(torch._C.__file__, mode=os.RTLD_NOLOAD)
    try:
        entry = torch_extension.omp_get_max_threads
    except AttributeError:
        raise ImportError(
            f"activerm_fast's CPU kernels run on the OpenMP runtime torch loads, and torch "
            f"{torch.__version__} loaded none; install a torch wheel from PyPI or "
            "download.pytorch.org (they ship their runtime)"
        ) from None
    info = _DlInfo()
    # dladdr lives in libc from glibc 2.34 on; libdl.so.2 reaches it on older and newer ones.
    dladdr = ctypes.CDLL("libdl.so.2").dladdr
    if not dladdr(ctypes.cast(entry, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        raise ImportError("dladdr cannot name the library of torch's omp_get_max_threads")
    return os.fsdecode(info.dli_fname)


os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
_chosen = os.environ.get("OMP_WAIT_POLICY")
if _chosen is None:
    os.environ["OMP_WAIT_POLICY"] = "passive"
try:
    import torch  # noqa: F401  (loads the OpenMP runtime)

    if sys.platform == "linux":
        ctypes.CDLL(torch_openmp_runtime(), mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    from . import _core  # noqa: F401
finally:
    if _chosen is None:
        del os.environ["OMP_WAIT_POLICY"]
