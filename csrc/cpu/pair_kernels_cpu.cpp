// Per-pair kernels on the CPU: each pair is independent, so one parallel loop over pairs.
#include <omp.h>

#include "activerm/cpu_kernels.h"
#include "activerm/pair_math.h"
#include "activerm/pair_source.h"

namespace activerm {

void CpuKernels::pair_diff(FeatureView features, PairView pairs, void* out, void*) {
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    using D = StoredDifference<T>;
    const T* f = static_cast<const T*>(features.data);
    const I* p = static_cast<const I*>(pairs.data);
    D* o = static_cast<D*>(out);
    const int64_t d = features.d;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < pairs.count; ++k) {
      const T* fi = f + static_cast<int64_t>(p[2 * k]) * d;
      const T* fj = f + static_cast<int64_t>(p[2 * k + 1]) * d;
      D* ok = o + k * d;
      for (int64_t a = 0; a < d; ++a) ok[a] = static_cast<D>(fi[a]) - static_cast<D>(fj[a]);
    }
  });
}

void CpuKernels::fisher_weights(const void* rewards, bool rewards_double, int64_t members,
                                int64_t n, PairView pairs, double* out, void*) {
  dispatch_types(rewards_double, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    const T* r = static_cast<const T*>(rewards);
    const I* p = static_cast<const I*>(pairs.data);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < pairs.count; ++k) {
      out[k] = mean_fisher_weight(r, members, n, p[2 * k], p[2 * k + 1]);
    }
  });
}

void CpuKernels::pair_quadform(FeatureView features, PairView pairs, const double* projected,
                               double scale, double* out, void*) {
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    const T* f = static_cast<const T*>(features.data);
    const I* p = static_cast<const I*>(pairs.data);
    const int64_t d = features.d;
    const double fs = features.scale;
    // kGroup pairs at a time, each summing its terms in order as pair_quadform does (and the
    // CUDA kernel): kGroup independent chains of additions hide each other's latency, which a
    // single chain per pair would wait on.
    constexpr int64_t kGroup = 8;
    const int64_t groups = pairs.count / kGroup;
#pragma omp parallel for schedule(static)
    for (int64_t group = 0; group < groups; ++group) {
      const T* fi[kGroup];
      const T* fj[kGroup];
      const double* gi[kGroup];
      const double* gj[kGroup];
      for (int64_t g = 0; g < kGroup; ++g) {
        const int64_t i = p[2 * (group * kGroup + g)];
        const int64_t j = p[2 * (group * kGroup + g) + 1];
        fi[g] = f + i * d;
        fj[g] = f + j * d;
        gi[g] = projected ? projected + i * d : nullptr;
        gj[g] = projected ? projected + j * d : nullptr;
      }
      double acc[kGroup] = {};
      for (int64_t a = 0; a < d; ++a) {
        for (int64_t g = 0; g < kGroup; ++g) acc[g] += quadform_term(fi[g], fj[g], gi[g], gj[g], a, fs);
      }
      for (int64_t g = 0; g < kGroup; ++g) {
        out[group * kGroup + g] = projected == nullptr ? acc[g] * scale : acc[g];
      }
    }
    for (int64_t k = groups * kGroup; k < pairs.count; ++k) {
      const int64_t i = p[2 * k];
      const int64_t j = p[2 * k + 1];
      const double* gi = projected ? projected + i * d : nullptr;
      const double* gj = projected ? projected + j * d : nullptr;
      out[k] = activerm::pair_quadform(f + i * d, f + j * d, gi, gj, d, scale, fs);
    }
  });
}

int cpu_max_threads() { return omp_get_max_threads(); }

void CpuKernels::implicit_pairs(PairView pairs, int64_t* out, void*) {
  const GeneratedPairs generated{pairs.implicit};
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < pairs.count; ++k) generated(k, out[2 * k], out[2 * k + 1]);
}

}  // namespace activerm
