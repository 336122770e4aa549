// CPU kernels (OpenMP). Outputs and workspace are preallocated by the caller; `stream` is
// ignored and exists so the CPU and CUDA backends share one binding (bindings.h).
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

struct CpuKernels {
  static constexpr const char* kName = "cpu";

  // out (P, d) in the features' dtype: phi_i - phi_j.
  static void pair_diff(FeatureView features, PairView pairs, void* out, void* stream);

  // out (P,) float64: mean over the E rows of the (E, n) rewards of sigma(D)(1 - sigma(D)),
  // D = r_i - r_j.
  static void fisher_weights(const void* rewards, bool rewards_double, int64_t members, int64_t n,
                             PairView pairs, double* out, void* stream);

  // out (P,) float64: d_k^T A d_k, with G = Phi A (n, d) float64, or A = scale * I when G is null.
  static void pair_quadform(FeatureView features, PairView pairs, const double* projected,
                            double scale, double* out, void* stream);

  // out (n, d) float64 = L_w Phi, the weighted pair Laplacian applied to the features, so that
  // Phi^T out = sum_k w_k d_k d_k^T. weights may be null (all ones). out is overwritten.
  static void laplacian_features(FeatureView features, PairView pairs, const double* weights,
                                 double* out, void* stream);

  // Greedy maximisation of log det(F0 + sum_S w_k d_k d_k^T) over k steps: writes the chosen
  // pair positions and the gains log(1 + w q) in choice order (both length k).
  static void greedy_logdet(FeatureView features, PairView pairs, GreedyWorkspace workspace,
                            int64_t k, int64_t* chosen, double* gains, void* stream);

  // Bytes of GreedyWorkspace::scratch the greedy loop needs for P pairs.
  static int64_t greedy_scratch_bytes(int64_t) { return 0; }
};

// Number of OpenMP threads a parallel region would use.
int cpu_max_threads();

}  // namespace activerm
