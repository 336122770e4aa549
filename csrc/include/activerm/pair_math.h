// Per-pair math shared by the CPU and CUDA kernels, so both backends compute the same numbers
// and the CPU tests exercise exactly what the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define ARM_HD __host__ __device__ __forceinline__
#else
#define ARM_HD inline
#endif

namespace activerm {

// Bradley-Terry Fisher weight sigma(delta) * (1 - sigma(delta)), written as e / (1 + e)^2 with
// e = exp(-|delta|) so it neither overflows nor cancels for large |delta|.
ARM_HD double bt_fisher_weight(double delta) {
  const double e = exp(-fabs(delta));
  const double s = 1.0 + e;
  return e / (s * s);
}

// Mean Fisher weight of pair (i, j) over the E ensemble members of a row-major (E, n) reward
// array.
template <class T>
ARM_HD double mean_fisher_weight(const T* rewards, int64_t members, int64_t n, int64_t i,
                                 int64_t j) {
  double total = 0.0;
  for (int64_t e = 0; e < members; ++e) {
    const T* r = rewards + e * n;
    total += bt_fisher_weight(static_cast<double>(r[i]) - static_cast<double>(r[j]));
  }
  return total / static_cast<double>(members);
}

// d_k^T A d_k = (phi_i - phi_j)^T (g_i - g_j) with G = Phi A; with no G, A = scale * I. The
// difference form is used (not s_i + s_j - 2 g_i.phi_j) because it does not cancel when
// phi_i is close to phi_j.
template <class T>
ARM_HD double pair_quadform(const T* fi, const T* fj, const double* gi, const double* gj,
                            int64_t d, double scale) {
  double acc = 0.0;
  if (gi == nullptr) {
    for (int64_t a = 0; a < d; ++a) {
      const double diff = static_cast<double>(fi[a]) - static_cast<double>(fj[a]);
      acc += diff * diff;
    }
    return acc * scale;
  }
  for (int64_t a = 0; a < d; ++a) {
    acc += (static_cast<double>(fi[a]) - static_cast<double>(fj[a])) * (gi[a] - gj[a]);
  }
  return acc;
}

// Column a of pair k's share of L_w Phi: row i gains w_k (phi_i - phi_j)_a and row j loses it,
// so that Phi^T (L_w Phi) = sum_k w_k d_k d_k^T.
template <class T>
ARM_HD double laplacian_contribution(double w, T fi_a, T fj_a) {
  return w * (static_cast<double>(fi_a) - static_cast<double>(fj_a));
}

// Greedy log-det bookkeeping. After choosing pair * with weight w and quadratic form q*,
// every q_k = d_k^T F^-1 d_k drops by w (u^T d_k)^2 / (1 + w q*) (Sherman-Morrison), where
// u^T d_k = v_i - v_j with v = Phi u.
ARM_HD double rank_one_coefficient(double w_star, double q_star) {
  return w_star / (1.0 + w_star * q_star);
}

ARM_HD double downdated_quadform(double q, double coefficient, double v_i, double v_j) {
  const double projection = v_i - v_j;
  return q - coefficient * projection * projection;
}

// Candidate a beats candidate b when its score is larger, ties going to the lower pair index.
// Masked pairs carry a NaN score, which never beats anything, so masking costs no extra
// memory traffic in the sweep.
ARM_HD bool beats(double score_a, int64_t index_a, double score_b, int64_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

}  // namespace activerm
