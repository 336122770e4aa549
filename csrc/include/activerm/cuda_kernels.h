// The CUDA backend: the interface of kernel_interface.h. Every pointer is device memory of the
// current device and `stream` is a cudaStream_t (null: the legacy default stream). The kernels
// only enqueue work on that stream: they never allocate and never synchronise, so results are
// ready when the stream reaches them. Launch errors throw std::runtime_error. The greedy loop
// runs every step on the device, with the CPU's arithmetic; fisher_matrix's scatter uses
// atomics, so its summation order (and the last bits) vary from run to run.
// Pure C++ (no CUDA headers): host-compiled code includes it.
#pragma once

#include <cstdint>

#include "activerm/kernel_interface.h"

namespace activerm {

struct CudaKernels {
  static constexpr const char* kName = "cuda";
  ACTIVERM_KERNEL_INTERFACE
};

// Number of CUDA devices, 0 when there is no driver or no device (never throws).
int cuda_device_count();

// CUDA runtime version linked into the module (e.g. 13000 for 13.0).
int cuda_runtime_version();

// Latest CUDA version the installed driver supports, 0 when there is no driver.
int cuda_driver_version();

}  // namespace activerm
