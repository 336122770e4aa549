// The interface every backend implements, declared once: CpuKernels (cpu_kernels.h) and
// CudaKernels (cuda_kernels.h) each expand ACTIVERM_KERNEL_INTERFACE into their static members,
// and bindings.h exposes either through one template. Outputs and workspace are allocated by
// the caller; `stream` is the backend's stream handle (ignored on the CPU).
//
//   pair_diff           out (P, d) in the features' dtype: phi_i - phi_j.
//   fisher_weights      out (P,) float64: mean over the E rows of the (E, n) rewards of
//                       sigma(D)(1 - sigma(D)), D = r_i - r_j.
//   pair_quadform       out (P,) float64: d_k^T A d_k, with projected = Phi A (n, d) float64,
//                       or A = scale * I when projected is null.
//   laplacian_features  out (n, d) float64 = L_w Phi, the weighted pair Laplacian applied to
//                       the features, so Phi^T out = sum_k w_k d_k d_k^T; weights may be null
//                       (all ones); out is overwritten.
//   greedy_logdet       greedy maximisation of log det(F0 + sum_S w_k d_k d_k^T) over k steps:
//                       the chosen pair positions and the gains log(1 + w q), in choice order.
//   greedy_scratch_bytes  bytes of GreedyWorkspace::scratch the greedy loop needs for P pairs.
#pragma once

#include <cstdint>

#include "activerm/views.h"

#define ACTIVERM_KERNEL_INTERFACE                                                               \
  static void pair_diff(FeatureView features, PairView pairs, void* out, void* stream);         \
  static void fisher_weights(const void* rewards, bool rewards_double, int64_t members,         \
                             int64_t n, PairView pairs, double* out, void* stream);             \
  static void pair_quadform(FeatureView features, PairView pairs, const double* projected,      \
                            double scale, double* out, void* stream);                           \
  static void laplacian_features(FeatureView features, PairView pairs, const double* weights,   \
                                 double* out, void* stream);                                    \
  static void greedy_logdet(FeatureView features, PairView pairs, GreedyWorkspace workspace,    \
                            int64_t k, int64_t* chosen, double* gains, void* stream);           \
  static int64_t greedy_scratch_bytes(int64_t count);
