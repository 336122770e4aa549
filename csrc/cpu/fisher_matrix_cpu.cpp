// fisher_matrix's scatter half, L_w Phi, over pairs: row i gains w_k d_k, row j loses it. Threads own disjoint
// column blocks and each sweeps all pairs in order, so there are no write conflicts and the
// sums do not depend on the thread count.
#include <algorithm>

#include "activerm/cpu_kernels.h"
#include "activerm/pair_math.h"

namespace activerm {

namespace {
constexpr int64_t kColumnBlock = 32;
}

void CpuKernels::fisher_matrix(FeatureView features, PairView pairs, const double* weights,
                               double* out, void*) {
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    const T* f = static_cast<const T*>(features.data);
    const I* p = static_cast<const I*>(pairs.data);
    const int64_t d = features.d;
    const int64_t blocks = (d + kColumnBlock - 1) / kColumnBlock;
    std::fill(out, out + features.n * d, 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * kColumnBlock;
      const int64_t end = std::min(d, begin + kColumnBlock);
      for (int64_t k = 0; k < pairs.count; ++k) {
        const int64_t i = p[2 * k];
        const int64_t j = p[2 * k + 1];
        const double w = weights ? weights[k] : 1.0;
        const T* fi = f + i * d;
        const T* fj = f + j * d;
        double* yi = out + i * d;
        double* yj = out + j * d;
        for (int64_t a = begin; a < end; ++a) {
          const double contribution = laplacian_contribution(w, fi[a], fj[a]);
          yi[a] += contribution;
          yj[a] -= contribution;
        }
      }
    }
  });
}

}  // namespace activerm
