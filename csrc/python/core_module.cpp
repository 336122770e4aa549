// _core: the CPU backend. Never links anything CUDA.
#include "activerm/cpu_kernels.h"
#include "bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "activerm_fast CPU kernels (C++17, OpenMP)";
  activerm::bind_kernels<activerm::CpuKernels>(m);
  m.attr("compiler") = ACTIVERM_CXX_COMPILER;
  m.def("max_threads", &activerm::cpu_max_threads, "OpenMP threads a parallel region would use");
}
