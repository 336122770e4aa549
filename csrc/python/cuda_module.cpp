// _cuda: the CUDA backend, built only when CMake found a CUDA compiler. The CUDA runtime is linked
// statically and loads the driver on first use, so the module imports on a machine without a
// driver or GPU, where device_count() is 0.
#include "activerm/cuda_kernels.h"
#include "bindings.h"

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "activerm_fast CUDA kernels";
  activerm::bind_kernels<activerm::CudaKernels>(m);
  m.attr("compiler") = ACTIVERM_CUDA_COMPILER;
  m.def("device_count", &activerm::cuda_device_count,
        "CUDA devices visible to this module (0 without a driver or device)");
  m.def("runtime_version", &activerm::cuda_runtime_version,
        "CUDA runtime version linked in, e.g. 13000 for 13.0");
  m.def("driver_version", &activerm::cuda_driver_version,
        "CUDA version the installed driver supports (0 without a driver)");
}
