// Helpers shared by the CUDA translation units: error checks and launch geometry.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace activerm::cuda {

// Kernels use grid-stride loops, so grids are capped well below the 2^31 - 1 block limit and
// any problem size works.
constexpr int64_t kMaxBlocks = 1 << 20;

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("activerm_fast CUDA backend: ") + what + " failed: " +
                             cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

// Launches are asynchronous: this reports a bad configuration (or an earlier sticky fault)
// without waiting for the kernel.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Blocks for a grid-stride loop over `items`, `per_block` items per block per pass.
inline unsigned grid_for(int64_t items, int64_t per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

inline bool aligned_to(const void* pointer, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

inline int current_device_attribute(cudaDeviceAttr attribute, const char* what) {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  int value = 0;
  check(cudaDeviceGetAttribute(&value, attribute, device), what);
  return value;
}

}  // namespace activerm::cuda
