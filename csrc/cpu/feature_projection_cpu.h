// The projection of features by a small float64 matrix on the CPU, in AVX-512 vectors (CPU
// only: the CUDA backend's callers take torch's product).
//
//   project_features   out (n, m) float64 = (scale Phi) M for row-major features (n, d) of any
//                      feature dtype and M (d, m) float64. Every entry sums its d terms
//                      (scale phi_ra) M_ac in ascending a from 0.0, a product and a sum
//                      rounded apart, so the bits do not depend on the thread count and equal
//                      an in-order float64 loop. Terms past a column block's last nonzero entry
//                      of M (or before its first) are left out: for finite features each adds a
//                      zero, which changes no value (at most the sign of a zero result), so a
//                      triangular M costs half the multiply-adds of a full one. Throws
//                      std::logic_error where wide_vectors() is false (no AVX-512, or
//                      ACTIVERM_FAST_NARROW_VECTORS set).
//
// It has no cache blocking: every tile reads its column blocks of M afresh, so it is written for
// small matrices. bench/bench_feature_projection.py times it against torch's float64 product,
// and the launch layer (_launch._kernel_projects) runs it where it is at least level (small or
// triangular matrices); torch's blocked product the rest.
#pragma once

#include <cstdint>

#include "activerm/views.h"

namespace activerm {

void project_features_cpu(FeatureView features, const double* matrix, int64_t m, double* out);

}  // namespace activerm
