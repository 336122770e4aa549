"""The internals the package's own tests, benchmarks and scripts use: one module, theirs.

User code needs none of this; it is the one place below the public API that ``tests/``,
``bench/`` and ``scripts/`` import from, so that the private modules can move without touching
them.

- ``reference``: plain NumPy float64 versions of every kernel and strategy, the test oracle
- ``launch``: the launch layer (backends, the kernels on validated tensors, ``GreedyEngine``)
- ``design``: the objective and the greedy driver (``Prior``, ``GreedyProblem``,
  ``greedy_engine``, ``refresh_state``)
- ``validation``: the argument checks
- ``core``: the compiled CPU extension; ``cuda``: the CUDA one (None when it was not built)
- ``SelectionInputs``, ``bal_pm``, ``relative_ridge``: the inputs one strategy runs on, BAL-PM's
  picking rule and the relative ridge, for tests of a single strategy's rule
- ``gpu_usable``: whether the CUDA backend can run here
- ``threads``: torch's thread count for the free cores (``free_core_threads``), as the fit and
  the simulation set it

Examples
--------
>>> import numpy as np
>>> from activerm_fast.testing import launch, reference
>>> features = np.arange(8.0).reshape(4, 2)
>>> reference.pair_diff(features, np.array([[1, 0]])).tolist()
[[2.0, 2.0]]
"""

from . import _core as core
from . import _launch as launch
from . import _reference as reference
from . import _threads as threads
from . import _validation as validation
from ._launch import gpu_usable
from .selection import bal_pm, design
from .selection.inputs import SelectionInputs
from .selection.ridge import relative_ridge

cuda = launch._cuda

__all__ = [
    "SelectionInputs",
    "bal_pm",
    "core",
    "cuda",
    "design",
    "gpu_usable",
    "launch",
    "reference",
    "relative_ridge",
    "threads",
    "validation",
]
