// What the module reports about the CUDA installation. The runtime is linked statically and
// loads the driver on first use, so these must cope with a machine that has no driver.
#include "activerm/cuda_kernels.h"
#include "cuda_common.cuh"

namespace activerm {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error so later calls do not report it
    return 0;
  }
  return count;
}

int cuda_runtime_version() {
  int version = 0;
  cuda::check(cudaRuntimeGetVersion(&version), "cudaRuntimeGetVersion");
  return version;
}

int cuda_driver_version() {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return version;
}

}  // namespace activerm
