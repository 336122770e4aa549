// The Fisher matrix's arithmetic, written once for the CPU and CUDA kernels
// (fisher_matrix_cpu.cpp, fisher_matrix_cuda.cu): the per-pair scatter of L_w Phi and the
// per-entry terms of the product Phi_c^T (L_w Phi). Each backend only chooses which thread runs
// which pairs, columns or entries, and how an addition lands (a plain += where one thread owns
// the element, an atomic add where warps share it).
#pragma once

#include <cstdint>

#include "activerm/pair_math.h"

namespace activerm {

// Pair k's share of L_w Phi over columns begin, begin + step, ... < end: row i gains
// w_k (phi_i - phi_j)_a and row j loses it (laplacian_contribution), through add(address, value).
template <class T, class I, class Add>
ARM_HD void scatter_pair(const T* features, int64_t d, const I* pairs, const double* weights,
                         int64_t k, int64_t begin, int64_t end, int64_t step, double* out,
                         const Add& add) {
  const int64_t i = pairs[2 * k];
  const int64_t j = pairs[2 * k + 1];
  const double w = weights ? weights[k] : 1.0;
  const T* fi = features + i * d;
  const T* fj = features + j * d;
  double* yi = out + i * d;
  double* yj = out + j * d;
  for (int64_t a = begin; a < end; a += step) {
    const double contribution = laplacian_contribution(w, fi[a], fj[a]);
    add(yi + a, contribution);
    add(yj + a, -contribution);
  }
}

// Whether row r of L_w Phi is not zero: the responses the pairs compare (with a weight and a
// difference that do not vanish). The product runs over these rows only.
ARM_HD bool compared_row(const double* laplacian, int64_t d, int64_t r) {
  for (int64_t a = 0; a < d; ++a) {
    if (laplacian[r * d + a] != 0.0) return true;
  }
  return false;
}

// Coordinate a of a compared row less the compared rows' mean: a product with L_w Phi (zero
// column sums) is the same for any centre in exact arithmetic; this one removes the
// cancellation a large common offset would cause and keeps far-off responses that no pair
// compares out of the products.
template <class T>
ARM_HD double centred_feature(const T* features, int64_t d, int64_t r, int64_t a,
                              const double* mean) {
  return static_cast<double>(features[r * d + a]) - mean[a];
}

// Entry (a, c) of the product gains row r's term; every entry sums its rows in ascending order
// from 0.0, whatever thread computes it, so the product is the same bits for any team size and
// on either backend.
ARM_HD double product_term(double centred_a, const double* laplacian, int64_t d, int64_t r,
                           int64_t c) {
  return centred_a * laplacian[r * d + c];
}

}  // namespace activerm
