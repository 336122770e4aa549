// Per-pair kernels on the CPU: each pair is independent, so one parallel loop over pairs.
#include <omp.h>

#include <type_traits>

#include "activerm/cpu_kernels.h"
#include "activerm/pair_math.h"
#include "activerm/pair_source.h"
#include "activerm/wide_vectors.h"
#include "one_shot_work_cpu.h"

namespace activerm {

namespace {

// Pairs pair_quadform sums side by side: kQuadformGroup independent chains of additions hide
// each other's latency, which a single chain per pair would wait on.
constexpr int64_t kQuadformGroup = 8;

// One group's rows: the features and (with a projection) the projected rows of both sides.
template <class T>
struct QuadformGroup {
  const T* fi[kQuadformGroup];
  const T* fj[kQuadformGroup];
  const double* gi[kQuadformGroup];
  const double* gj[kQuadformGroup];
};

// Coordinates from `first` on of every pair of the group, each pair's terms added in order to
// its acc: the scalar form, and the wide form's tail past its last block of 8.
template <class T>
void quadform_terms(const QuadformGroup<T>& rows, int64_t first, int64_t d, double fs,
                    double* acc) {
  for (int64_t a = first; a < d; ++a) {
    for (int64_t g = 0; g < kQuadformGroup; ++g) {
      acc[g] += quadform_term(rows.fi[g], rows.fj[g], rows.gi[g], rows.gj[g], a, fs);
    }
  }
}

#ifdef ACTIVERM_WIDE_VECTORS
// Rows r[0..7] of 8 doubles become columns: r[c] lane g = the old r[g] lane c.
ACTIVERM_WIDE inline void transpose_eight(__m512d* r) {
  __m512d pairs[8];  // lanes of two rows interleaved: r[2h], r[2h + 1] at even, odd coordinates
  for (int h = 0; h < 4; ++h) {
    pairs[2 * h] = _mm512_unpacklo_pd(r[2 * h], r[2 * h + 1]);
    pairs[2 * h + 1] = _mm512_unpackhi_pd(r[2 * h], r[2 * h + 1]);
  }
  const __m512i low_halves = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i high_halves = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  __m512d quads[8];  // four rows' coordinates c and c + 4, for c = 0..3
  for (int half = 0; half < 2; ++half) {
    for (int parity = 0; parity < 2; ++parity) {
      const __m512d top = pairs[4 * half + parity];
      const __m512d bottom = pairs[4 * half + 2 + parity];
      quads[4 * half + parity] = _mm512_permutex2var_pd(top, low_halves, bottom);
      quads[4 * half + 2 + parity] = _mm512_permutex2var_pd(top, high_halves, bottom);
    }
  }
  const __m512i low_quads = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
  const __m512i high_quads = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_permutex2var_pd(quads[c], low_quads, quads[4 + c]);
    r[c + 4] = _mm512_permutex2var_pd(quads[c], high_quads, quads[4 + c]);
  }
}

// The group's sums in AVX-512 vectors, a lane per pair: eight coordinates of the eight pairs'
// terms are formed row by row (each lane the scalar term's operations, rounded the same), turned
// into columns, and added to the lanes in coordinate order: each pair's sum in order, the same
// bits as the scalar form, with every row read in whole vectors.
template <class T>
ACTIVERM_WIDE void wide_quadform_terms(const QuadformGroup<T>& rows, int64_t d, double fs,
                                       bool projected, double* out) {
  const __m512d scale = _mm512_set1_pd(fs);
  __m512d acc = _mm512_setzero_pd();
  int64_t a = 0;
  for (; a + 8 <= d; a += 8) {
    __m512d terms[8];
    for (int64_t g = 0; g < kQuadformGroup; ++g) {
      const __m512d diff = _mm512_sub_pd(_mm512_mul_pd(load_eight(rows.fi[g] + a), scale),
                                         _mm512_mul_pd(load_eight(rows.fj[g] + a), scale));
      const __m512d other = projected ? _mm512_sub_pd(_mm512_loadu_pd(rows.gi[g] + a),
                                                      _mm512_loadu_pd(rows.gj[g] + a))
                                      : diff;
      terms[g] = _mm512_mul_pd(diff, other);
    }
    transpose_eight(terms);
    for (int c = 0; c < 8; ++c) acc = _mm512_add_pd(acc, terms[c]);
  }
  _mm512_storeu_pd(out, acc);
  quadform_terms(rows, a, d, fs, out);
}
#endif

// The group's sums, in AVX-512 vectors where ``wide`` (half features: always in scalars).
template <class T>
void group_sums(const QuadformGroup<T>& rows, int64_t d, double fs, bool projected,
                [[maybe_unused]] bool wide, double* acc) {
#ifdef ACTIVERM_WIDE_VECTORS
  if constexpr (!kHalfFeature<T>) {
    if (wide) return wide_quadform_terms(rows, d, fs, projected, acc);
  }
#endif
  quadform_terms(rows, 0, d, fs, acc);
}

}  // namespace

void CpuKernels::pair_diff(FeatureView features, PairView pairs, void* out, void*) {
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    using D = StoredDifference<T>;
    const T* f = static_cast<const T*>(features.data);
    const I* p = static_cast<const I*>(pairs.data);
    D* o = static_cast<D*>(out);
    const int64_t d = features.d;
#pragma omp parallel for schedule(static) if (pairs.count * d >= kOneShotParallelWork)
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
#pragma omp parallel for schedule(static) \
    if (pairs.count * members >= kOneShotParallelWork / kPairWork)
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
    // kQuadformGroup pairs at a time, each summing its terms in order as pair_quadform does
    // (and the CUDA kernel); in AVX-512 vectors where the CPU has them (group_sums)
    const bool wide = wide_vectors();
    const int64_t groups = pairs.count / kQuadformGroup;
#pragma omp parallel for schedule(static) if (pairs.count * d >= kOneShotParallelWork)
    for (int64_t group = 0; group < groups; ++group) {
      QuadformGroup<T> rows;
      for (int64_t g = 0; g < kQuadformGroup; ++g) {
        const int64_t i = p[2 * (group * kQuadformGroup + g)];
        const int64_t j = p[2 * (group * kQuadformGroup + g) + 1];
        rows.fi[g] = f + i * d;
        rows.fj[g] = f + j * d;
        rows.gi[g] = projected ? projected + i * d : nullptr;
        rows.gj[g] = projected ? projected + j * d : nullptr;
      }
      double acc[kQuadformGroup] = {};
      group_sums(rows, d, fs, projected != nullptr, wide, acc);
      for (int64_t g = 0; g < kQuadformGroup; ++g) {
        out[group * kQuadformGroup + g] = projected == nullptr ? acc[g] * scale : acc[g];
      }
    }
    for (int64_t k = groups * kQuadformGroup; k < pairs.count; ++k) {
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
#pragma omp parallel for schedule(static) if (pairs.count >= kOneShotParallelWork / kPairWork)
  for (int64_t k = 0; k < pairs.count; ++k) generated(k, out[2 * k], out[2 * k + 1]);
}

}  // namespace activerm
