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
// e = exp(-|delta|) so it neither overflows nor cancels for large |delta|; held at its maximum
// 1/4, which rounding exceeds by an ulp for |delta| near 1e-15.
ARM_HD double bt_fisher_weight(double delta) {
  const double e = exp(-fabs(delta));
  const double s = 1.0 + e;
  return fmin(0.25, e / (s * s));
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

// Coordinate a of phi_i - phi_j with the features read times the power of two feature_scale:
// scaling before subtracting keeps the difference finite whatever the features' magnitude and
// rounds exactly as the unscaled difference would (scaled).
template <class T>
ARM_HD double scaled_difference(T fi_a, T fj_a, double feature_scale) {
  return static_cast<double>(fi_a) * feature_scale - static_cast<double>(fj_a) * feature_scale;
}

// d_k^T A d_k = (phi_i - phi_j)^T (g_i - g_j) with G = Phi A; with no G, A = scale * I. The
// difference form is used (not s_i + s_j - 2 g_i.phi_j) because it does not cancel when
// phi_i is close to phi_j. Features are read times feature_scale (see scaled_difference).
// quadform_term is coordinate a's term; pair_quadform sums them in order (the CPU kernel sums
// several pairs side by side, each in that order).
template <class T>
ARM_HD double quadform_term(const T* fi, const T* fj, const double* gi, const double* gj,
                            int64_t a, double feature_scale) {
  const double diff = scaled_difference(fi[a], fj[a], feature_scale);
  return gi == nullptr ? diff * diff : diff * (gi[a] - gj[a]);
}

template <class T>
ARM_HD double pair_quadform(const T* fi, const T* fj, const double* gi, const double* gj,
                            int64_t d, double scale, double feature_scale) {
  double acc = 0.0;
  for (int64_t a = 0; a < d; ++a) acc += quadform_term(fi, fj, gi, gj, a, feature_scale);
  return gi == nullptr ? acc * scale : acc;
}

// Column a of pair k's share of L_w Phi: row i gains w_k (phi_i - phi_j)_a and row j loses it,
// so that Phi^T (L_w Phi) = sum_k w_k d_k d_k^T.
template <class T>
ARM_HD double laplacian_contribution(double w, T fi_a, T fj_a) {
  return w * (static_cast<double>(fi_a) - static_cast<double>(fj_a));
}

// Greedy log-det bookkeeping. After choosing pair * with weight w and quadratic form q*,
// every q_k = d_k^T F^-1 d_k drops by w (u^T d_k)^2 / (1 + w q*) (Sherman-Morrison), where
// u = F^-1 d* and u^T d_k = v_i - v_j with v = Phi u.
ARM_HD double rank_one_coefficient(double w_star, double q_star) {
  return w_star / (1.0 + w_star * q_star);
}

// The factor S of F^-1 = S S^T is updated instead of F^-1 itself (Potter's square-root form):
// with f = S^T d*, q* = f.f and u = S f = F^-1 d*, S' = S - gamma u f^T satisfies
// S' S'^T = (F + w d* d*^T)^-1 for gamma = w / ((1 + w q*) + sqrt(1 + w q*)). Every term is
// positive, so nothing cancels, and S S^T stays positive semi-definite by construction: the
// plain update F^-1 -= c u u^T loses every digit once the chosen pairs' information exceeds
// the prior by 1/epsilon.
ARM_HD double factor_update_coefficient(double w_star, double q_star) {
  const double s = 1.0 + w_star * q_star;
  return w_star / (s + sqrt(s));
}

// The score of a pair for E members whose gains are log1p(x_e), x_e = w_e q_e: accumulated as
// score' = score + x + score x, i.e. prod_e (1 + x_e) - 1. It is a monotone function of the
// objective sum_e log1p(x_e), equals x for one member, loses no small x to the rounding of
// 1 + x, and costs no logarithm per member.
ARM_HD double combined_score(double score, double x) { return score + x + score * x; }

ARM_HD double downdated_quadform(double q, double coefficient, double v_i, double v_j) {
  const double projection = v_i - v_j;
  return q - coefficient * projection * projection;
}

// Whether the running scores (downdated step after step) no longer carry the precision a choice
// needs, so that the state must be recomputed from the chosen pairs. A downdate
// q - c (v_i - v_j)^2 errs by about epsilon times the score it started from, so two signs:
//  * drifted: the chosen pair's running score differs from its fresh value by more than
//    `tolerance` relative;
//  * fell: a member's w q* of the choice is below kScoreDrop of that member's w q* at the first
//    choice since the scores were fresh. After such a fall any pair's running score may be off
//    by more than 1e-6 of the best, and a pair whose score cancelled to nothing would never be
//    offered to the drift check at all.
constexpr double kScoreDrop = 1e-10;

ARM_HD bool drifted(double running, double fresh, double tolerance) {
  return fabs(running - fresh) > tolerance * fabs(fresh);
}

ARM_HD bool fell(double value, double reference) { return value < kScoreDrop * reference; }

// Candidate a beats candidate b when its score is larger, ties going to the lower pair index.
// Masked pairs carry a NaN score, which never beats anything, so masking costs no extra
// memory traffic in the sweep.
ARM_HD bool beats(double score_a, int64_t index_a, double score_b, int64_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

}  // namespace activerm
