// Plain descriptions of the arrays the Python wrapper hands to a kernel (pointer, sizes, dtype),
// and the dtype dispatch both backends use. The wrapper validates and makes them contiguous.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace activerm {

struct FeatureView {  // row-major (n, d), float32 or float64
  const void* data;
  bool is_double;
  int64_t n;
  int64_t d;
};

struct PairView {  // row-major (count, 2), int32 or int64, first minus second
  const void* data;
  bool is_int64;
  int64_t count;
};

// Workspace of the greedy loop, all float64 and allocated by the caller:
// weights (P), scores q (P; on entry d_k^T F0^-1 d_k with NaN for pairs that may not be chosen),
// inverse (d, d; on entry F0^-1, on exit the final F^-1), projection v (n), direction u (d),
// chosen difference (d), and backend-specific scratch (greedy_scratch_bytes of the backend).
struct GreedyWorkspace {
  const double* weights;
  double* quadforms;
  double* inverse;
  double* projection;
  double* direction;
  double* difference;
  void* scratch;
};

// Calls fn(T{}, I{}) with T the feature type and I the pair index type.
template <class Fn>
void dispatch_types(bool is_double, bool is_int64, Fn&& fn) {
  if (is_double) {
    if (is_int64) fn(double{}, int64_t{});
    else fn(double{}, int32_t{});
  } else {
    if (is_int64) fn(float{}, int64_t{});
    else fn(float{}, int32_t{});
  }
}

}  // namespace activerm
