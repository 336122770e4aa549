// Exact greedy log-det selection with rank-one updates. A step costs O(d^2) for F^-1,
// O(n d) for v = Phi u and one O(P) sweep that downdates every score and finds the next
// argmax in the same pass over memory.
#include <cmath>
#include <limits>

#include "activerm/cpu_kernels.h"
#include "activerm/pair_math.h"

namespace activerm {

namespace {

constexpr int64_t kParallelDim = 512;
// Work is handed out in chunks (dynamic schedule), so a thread the OS preempts does not hold
// the whole step up at the barrier: the other threads take its share. Results do not depend
// on who takes which chunk.
constexpr int64_t kSweepChunk = 1 << 15;
constexpr int64_t kRowBlockChunk = 64;

struct Best {
  double score;
  int64_t index;
};

// One pass over the pairs: optionally downdate q_k by the last choice, then return the pair
// with the largest w_k q_k (ties to the lowest index, NaN = masked never wins).
template <bool Downdate, class I>
int64_t sweep(const I* pairs, int64_t count, const double* weights, double* quadforms,
              const double* projection, double coefficient) {
  Best best{-std::numeric_limits<double>::infinity(), -1};
#pragma omp parallel
  {
    Best local{-std::numeric_limits<double>::infinity(), -1};
#pragma omp for schedule(dynamic, kSweepChunk) nowait
    for (int64_t k = 0; k < count; ++k) {
      double q = quadforms[k];
      if constexpr (Downdate) {
        q = downdated_quadform(q, coefficient, projection[pairs[2 * k]], projection[pairs[2 * k + 1]]);
        quadforms[k] = q;
      }
      const double score = weights[k] * q;
      if (beats(score, k, local.score, local.index)) local = {score, k};
    }
#pragma omp critical(activerm_sweep_best)
    if (beats(local.score, local.index, best.score, best.index)) best = local;
  }
  return best.index;
}

// v = Phi u. Every row sums in order with one float64 accumulator (the rounding the CUDA
// kernel reproduces); four rows at a time give four independent add chains, which hides the
// add latency that a single chain per row would wait on.
template <class T>
void project_features(const T* f, int64_t n, int64_t d, const double* u, double* v) {
  constexpr int64_t kRows = 4;
  const int64_t blocks = (n + kRows - 1) / kRows;
#pragma omp parallel for schedule(dynamic, kRowBlockChunk)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kRows;
    if (first + kRows <= n) {
      const T* r0 = f + first * d;
      const T* r1 = r0 + d;
      const T* r2 = r1 + d;
      const T* r3 = r2 + d;
      double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
      for (int64_t a = 0; a < d; ++a) {
        const double ua = u[a];
        a0 += static_cast<double>(r0[a]) * ua;
        a1 += static_cast<double>(r1[a]) * ua;
        a2 += static_cast<double>(r2[a]) * ua;
        a3 += static_cast<double>(r3[a]) * ua;
      }
      v[first] = a0;
      v[first + 1] = a1;
      v[first + 2] = a2;
      v[first + 3] = a3;
    } else {
      for (int64_t i = first; i < n; ++i) {
        const T* row = f + i * d;
        double acc = 0.0;
        for (int64_t a = 0; a < d; ++a) acc += static_cast<double>(row[a]) * u[a];
        v[i] = acc;
      }
    }
  }
}

template <class T, class I>
void greedy(FeatureView features, PairView pairs, GreedyWorkspace ws, int64_t k, int64_t* chosen,
            double* gains) {
  const T* f = static_cast<const T*>(features.data);
  const I* p = static_cast<const I*>(pairs.data);
  const int64_t n = features.n;
  const int64_t d = features.d;
  double* inverse = ws.inverse;
  double* u = ws.direction;
  double* diff = ws.difference;

  int64_t best = sweep<false>(p, pairs.count, ws.weights, ws.quadforms, nullptr, 0.0);
  for (int64_t t = 0; t < k; ++t) {
    chosen[t] = best;
    const T* fi = f + static_cast<int64_t>(p[2 * best]) * d;
    const T* fj = f + static_cast<int64_t>(p[2 * best + 1]) * d;
    for (int64_t a = 0; a < d; ++a) diff[a] = static_cast<double>(fi[a]) - static_cast<double>(fj[a]);
    // u = F^-1 d*, and q* afresh from it rather than from the running score, so the gain is
    // exact even after many downdates. The O(d^2) parts only pay for threads at large d.
#pragma omp parallel for schedule(static) if (d >= kParallelDim)
    for (int64_t r = 0; r < d; ++r) {
      const double* row = inverse + r * d;
      double acc = 0.0;
      for (int64_t a = 0; a < d; ++a) acc += row[a] * diff[a];
      u[r] = acc;
    }
    double q_star = 0.0;
    for (int64_t a = 0; a < d; ++a) q_star += diff[a] * u[a];
    const double w_star = ws.weights[best];
    gains[t] = std::log1p(w_star * q_star);
    ws.quadforms[best] = std::numeric_limits<double>::quiet_NaN();
    if (t + 1 == k) break;

    const double c = rank_one_coefficient(w_star, q_star);
    project_features(f, n, d, u, ws.projection);
#pragma omp parallel for schedule(static) if (d >= kParallelDim)
    for (int64_t r = 0; r < d; ++r) {
      double* row = inverse + r * d;
      const double cu = c * u[r];
      for (int64_t a = 0; a < d; ++a) row[a] -= cu * u[a];
    }
    best = sweep<true>(p, pairs.count, ws.weights, ws.quadforms, ws.projection, c);
  }
}

}  // namespace

void CpuKernels::greedy_logdet(FeatureView features, PairView pairs, GreedyWorkspace workspace,
                               int64_t k, int64_t* chosen, double* gains, void*) {
  dispatch_types(features.is_double, pairs.is_int64, [&](auto t, auto idx) {
    greedy<decltype(t), decltype(idx)>(features, pairs, workspace, k, chosen, gains);
  });
}

// The CPU loop needs no scratch beyond the workspace arrays.
int64_t CpuKernels::greedy_scratch_bytes(int64_t) { return 0; }

}  // namespace activerm
