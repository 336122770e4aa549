// Plain descriptions of the arrays a kernel reads and writes (pointer, sizes, dtype) and the
// dtype dispatch both backends use. The launch layer (python/activerm_fast/_launch.py) builds
// them from validated, contiguous arrays; kernels never allocate and never validate.
#pragma once

#include <cstdint>

namespace activerm {

struct FeatureView {  // row-major (n, d), float32 or float64
  const void* data;
  bool is_double;
  int64_t n;
  int64_t d;
  // A power of two every feature is multiplied by as it is read (1: none), honoured by
  // pair_quadform and the greedy engine. Scaling by a power of two is exact, so it moves
  // features of any magnitude into the range where their squares neither overflow nor
  // underflow without changing a single rounding.
  double scale;
};

struct PairView {  // row-major (count, 2), int32 or int64, first minus second
  const void* data;
  bool is_int64;
  int64_t count;
};

// Ensemble members one greedy engine serves at most (the choice record below is fixed-size).
constexpr int64_t kMaxMembers = 64;

// GreedyChoice::index values that are no pair: no pair has a finite score; or the chosen pair's
// running score has drifted from its fresh value, and the caller must recompute the state from
// the pairs chosen so far before going on (the engine stops there, leaving the state alone).
constexpr int64_t kNoChoice = -1;
constexpr int64_t kRefreshChoice = -2;

// What the greedy engine optimises: sum over E members of log det(F0_e + sum_S w_e,k d_e,k
// d_e,k^T), E = 1 for a single model. Member e's features start member_stride elements after
// member 0's (0: all members share one matrix); weights are (count, E), a pair's members side by
// side, so one sweep reads each pair's state from one place. The pairs may be one shard of a
// larger pool: pair k here is pair first_index + k globally. A step whose chosen pair's running
// score differs from its fresh value by more than refresh_tolerance (relative; 0: never) stops
// the engine with kRefreshChoice.
struct GreedyProblem {
  FeatureView features;
  int64_t members;
  int64_t member_stride;
  PairView pairs;
  const double* weights;
  int64_t first_index;
  double refresh_tolerance;
};

// The engine's mutable state, float64, in the backend's memory:
//   scores    (count, E): q_e,k = d_e,k^T F_e^-1 d_e,k; NaN marks a pair that may not be chosen.
//   factor    (E, d, d):  S_e with S_e S_e^T = F_e^-1 (on entry for F0_e; updated in place).
//   workspace greedy_workspace_bytes(problem) bytes, 8-byte aligned; starts with a GreedyChoice.
struct GreedyState {
  double* scores;
  double* factor;
  void* workspace;
};

// The pair a sweep found best (or kNoChoice, kRefreshChoice), in 8-byte slots at the
// start of the workspace so a caller can read the proposals of several shards and write back
// the winner before the choice is applied. Indices are global.
struct GreedyChoice {
  double score;
  int64_t index;
  int64_t first;
  int64_t second;
  double weights[kMaxMembers];  // w_e of the pair for each member
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
