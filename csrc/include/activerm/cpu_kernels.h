// The CPU backend (C++17, OpenMP): the interface of kernel_interface.h.
#pragma once

#include "activerm/kernel_interface.h"

namespace activerm {

struct CpuKernels {
  static constexpr const char* kName = "cpu";
  ACTIVERM_KERNEL_INTERFACE
};

// Number of OpenMP threads a parallel region would use.
int cpu_max_threads();

}  // namespace activerm
