// The projection of features by a small float64 matrix on the CPU, in AVX-512 vectors (CPU
// only: the CUDA backend's callers take torch's product).
//
//   project_features   out (n, m) float64 = (scale Phi) M for row-major features (n, d) of any
//                      feature dtype and M (d, m) float64. Every entry sums its d terms
//                      (scale phi_ra) M_ac in ascending a from 0.0, a product and a sum
//                      rounded apart, so the bits do not depend on the thread count and equal
//                      an in-order float64 loop. Terms past a column block's last nonzero entry
//                      of M (or before its first) are left out: each adds a zero, which changes
//                      no value (at most the sign of a zero result), so a triangular M costs
//                      half the multiply-adds of a full one.
//
// Held in the cache it is compute-bound: measured beside torch's float64 product (MKL) on this
// package's benchmark machine it is level with it for a full (d, d) M up to d = 256 and about
// twice as fast for a triangular one (bench/bench_feature_projection.py), while for larger
// matrices, which leave the cache, torch's blocked product is faster: the launch layer
// (_launch.project_features) chooses.
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

// Whether project_features runs here: built for x86-64 and the CPU has AVX-512F (wide_vectors).
bool project_features_supported();

void project_features_cpu(FeatureView features, const double* matrix, int64_t m, double* out);

}  // namespace activerm
