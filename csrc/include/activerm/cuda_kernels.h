// CUDA kernels behind the same interface as CpuKernels (cpu_kernels.h). Every pointer is device
// memory of the current device and `stream` is a cudaStream_t (null: the legacy default stream).
// The kernels only enqueue work on that stream: they never allocate and never synchronise, so
// results are ready when the stream reaches them. Launch errors throw std::runtime_error.
// Pure C++ (no CUDA headers): host-compiled code includes it.
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

struct CudaKernels {
  static constexpr const char* kName = "cuda";

  // out (P, d) in the features' dtype: phi_i - phi_j.
  static void pair_diff(FeatureView features, PairView pairs, void* out, void* stream);

  // out (P,) float64: mean over the E rows of the (E, n) rewards of sigma(D)(1 - sigma(D)).
  static void fisher_weights(const void* rewards, bool rewards_double, int64_t members, int64_t n,
                             PairView pairs, double* out, void* stream);

  // out (P,) float64: d_k^T A d_k, with G = Phi A (n, d) float64, or A = scale * I when G is null.
  static void pair_quadform(FeatureView features, PairView pairs, const double* projected,
                            double scale, double* out, void* stream);

  // out (n, d) float64 = L_w Phi by an atomic scatter over pairs (summation order, and so the
  // last bits, vary from run to run). weights may be null (all ones). out is overwritten.
  static void laplacian_features(FeatureView features, PairView pairs, const double* weights,
                                 double* out, void* stream);

  // Greedy log-det selection, the same algorithm and arithmetic as the CPU backend, with every
  // step on the device: the host enqueues all k steps without waiting for any of them.
  static void greedy_logdet(FeatureView features, PairView pairs, GreedyWorkspace workspace,
                            int64_t k, int64_t* chosen, double* gains, void* stream);

  // Bytes of device scratch (GreedyWorkspace::scratch, 8-byte aligned) the greedy loop needs.
  static int64_t greedy_scratch_bytes(int64_t count);
};

// Number of CUDA devices, 0 when there is no driver or no device (never throws).
int cuda_device_count();

// CUDA runtime version linked into the module (e.g. 13000 for 13.0).
int cuda_runtime_version();

// Latest CUDA version the installed driver supports, 0 when there is no driver.
int cuda_driver_version();

}  // namespace activerm
