"""Imported before anything else in the package: loads torch, and with it the OpenMP runtime
that ``_core`` shares (one ``libgomp``), with idle OpenMP threads sleeping rather than spinning.

The reward model's training is thousands of small parallel regions. Threads that spin while idle
take the cores from the working threads of the next region, which on a busy machine waits for
them at its barrier. libgomp reads OMP_WAIT_POLICY once, when it loads, which is when torch is
first imported: the variable is set to ``passive`` for that moment only, unless the user chose
a policy. A program that imported torch before this package keeps its own setting.
"""

from __future__ import annotations

import os

_chosen = os.environ.get("OMP_WAIT_POLICY")
if _chosen is None:
    os.environ["OMP_WAIT_POLICY"] = "passive"
try:
    import torch  # noqa: F401  (loads the OpenMP runtime)

    from . import _core  # noqa: F401  (the same runtime, or its own where torch has none)
finally:
    if _chosen is None:
        del os.environ["OMP_WAIT_POLICY"]
