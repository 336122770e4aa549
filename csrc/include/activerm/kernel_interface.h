// The interface every backend implements, declared once: CpuKernels (cpu_kernels.h) and
// CudaKernels (cuda_kernels.h) each expand ACTIVERM_KERNEL_INTERFACE into their static members,
// and bindings.h exposes either through one template. Outputs and workspaces are allocated by
// the caller; `stream` is the backend's stream handle (ignored on the CPU).
//
//   pair_diff           out (P, d) in the features' dtype: phi_i - phi_j.
//   fisher_weights      out (P,) float64: mean over the E rows of the (E, n) rewards of
//                       sigma(D)(1 - sigma(D)), D = r_i - r_j.
//   pair_quadform       out (P,) float64: d_k^T A d_k, with projected = Phi A (n, d) float64,
//                       or A = scale * I when projected is null.
//   fisher_matrix       the scatter half of fisher_matrix: out (n, d) float64 = L_w Phi, the
//                       weighted pair Laplacian applied to the features, so Phi^T out =
//                       sum_k w_k d_k d_k^T; weights may be null (all ones); out is overwritten.
//   fisher_product      the product half: out (d, d) float64 = Phi_c^T L for L = fisher_matrix's
//                       (n, d) out, Phi_c the features of the rows where L is not zero (the
//                       responses the pairs compare) less those rows' mean; symmetric up to
//                       rounding. Every entry sums its rows in ascending order from 0, so the
//                       bits do not depend on the thread count, and CPU and CUDA agree given
//                       the same L. workspace: n + d 8-byte slots.
//   implicit_pairs      out (P, 2) int64: the pairs of a generated view (pair_source.h), as
//                       every kernel that reads them computes them.
//
// The greedy engine (views.h: GreedyProblem, GreedyState, GreedyChoice), three primitives and
// the loop they compose:
//   greedy_sweep        over this process's pairs: with `downdate`, apply the last choice's
//                       downdate to every score; then write the best pair (largest score, ties
//                       to the lowest index, NaN never) to the workspace's GreedyChoice.
//   greedy_apply        apply the GreedyChoice as step `step`: record its index and gain in
//                       chosen[step], gains[step] (index -1, gain NaN when the sweep found no
//                       pair); mask the pair if it is local; with prepare_next, update every
//                       member's factor and compute the projections the next downdate needs.
//   greedy_run          sweep, then k applies, each but the last preparing the next step and
//                       followed by a sweep (the single-process selection).
//   greedy_workspace_bytes  bytes of GreedyState::workspace the problem needs.
//   greedy_zeroed_bytes     how many of them, from the start, must be zero before the first
//                           sweep (the rest may hold anything).
#pragma once

#include <cstdint>

#include "activerm/views.h"

#define ACTIVERM_KERNEL_INTERFACE                                                               \
  static void pair_diff(FeatureView features, PairView pairs, void* out, void* stream);         \
  static void fisher_weights(const void* rewards, bool rewards_double, int64_t members,         \
                             int64_t n, PairView pairs, double* out, void* stream);             \
  static void pair_quadform(FeatureView features, PairView pairs, const double* projected,      \
                            double scale, double* out, void* stream);                           \
  static void fisher_matrix(FeatureView features, PairView pairs, const double* weights,        \
                            double* out, void* stream);                                         \
  static void fisher_product(FeatureView features, const double* laplacian, void* workspace,     \
                             double* out, void* stream);                                        \
  static void implicit_pairs(PairView pairs, int64_t* out, void* stream);                       \
  static int64_t greedy_workspace_bytes(const GreedyProblem& problem);                          \
  static int64_t greedy_zeroed_bytes(const GreedyProblem& problem);                             \
  static void greedy_sweep(const GreedyProblem& problem, GreedyState state, bool downdate,      \
                           void* stream);                                                       \
  static void greedy_apply(const GreedyProblem& problem, GreedyState state, int64_t step,       \
                           int64_t* chosen, double* gains, bool prepare_next, void* stream);    \
  static void greedy_run(const GreedyProblem& problem, GreedyState state, int64_t k,            \
                         int64_t* chosen, double* gains, void* stream);
