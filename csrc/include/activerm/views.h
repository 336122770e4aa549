// Plain descriptions of the arrays a kernel reads and writes (pointer, sizes, dtype) and the
// dtype dispatch both backends use. The launch layer (python/activerm_fast/_launch.py) builds
// them from validated, contiguous arrays; kernels never allocate and never validate.
#pragma once

#include <cstdint>

#include "activerm/feature_types.h"

namespace activerm {

struct FeatureView {  // row-major (n, d): float32, float64, float16 or bfloat16 (feature_types.h)
  const void* data;
  int32_t dtype;  // kFeatureFloat32, kFeatureFloat64, kFeatureFloat16, kFeatureBFloat16
  int64_t n;
  int64_t d;
  // A power of two every feature is multiplied by as it is read (1: none), honoured by
  // pair_quadform and the greedy engine. Scaling by a power of two is exact, so it moves
  // features of any magnitude into the range where their squares neither overflow nor
  // underflow without changing a single rounding.
  double scale;
};

// A pool whose pairs are generated, never stored (pair_source.h): pair k is a function of
// (key, k) alone, a counter-based draw, so any range of k (a shard) needs only the key.
// Pair k's first response a is eligible response floor(k spread) (spread = eligible / pool
// size: every eligible response is first equally often); cross-prompt (kind 1): all n are
// eligible, the partner is uniform over the responses to other prompts; within-prompt (kind 2):
// the `eligible` responses whose prompt has another (draw_from lists their grouped positions),
// the partner uniform over the others of its prompt. Positions are into `order` (n), the responses grouped by prompt; runs (n, 2)
// holds [start, stop) of the prompt run of each grouped position. A pair is (min, max).
constexpr int32_t kStoredPairs = 0;
constexpr int32_t kCrossPromptPairs = 1;
constexpr int32_t kWithinPromptPairs = 2;

struct ImplicitPairs {
  int32_t kind = kStoredPairs;
  uint64_t key = 0;     // the mixed seed
  int64_t first = 0;    // the counter of local pair 0 (a shard's first global pair)
  int64_t n = 0;        // responses
  int64_t eligible = 0; // responses the first of a pair is one of
  double spread = 0.0;  // eligible / the whole pool's size
  const int64_t* order = nullptr;  // null: the responses are grouped already (the identity)
  const int64_t* runs = nullptr;
  const int64_t* draw_from = nullptr;  // (eligible) grouped positions; null: all n (cross)
};

struct PairView {  // row-major (count, 2), int32 or int64, first minus second; or generated
  const void* data;
  bool is_int64;
  int64_t count;
  ImplicitPairs implicit = {};  // kind kStoredPairs: the pairs are `data`
};

// Fisher weights computed where they are used instead of read from a (P, E) array: member e's
// weight of pair (i, j) is the mean Bradley-Terry weight over `rows` float64 reward rows of n
// responses starting at rewards + e * rows * n (the arithmetic of fisher_weights).
struct RewardWeights {
  const double* rewards = nullptr;  // null: the weights are GreedyProblem::weights
  int64_t rows = 0;
  int64_t n = 0;
};

// Ensemble members one greedy engine serves at most (the choice record below is fixed-size).
constexpr int64_t kMaxMembers = 64;

// GreedyChoice::index values that are no pair: no pair has a finite score; or the chosen pair's
// running score has drifted from its fresh value, and the caller must recompute the state from
// the pairs chosen so far before going on (the engine stops there, leaving the state alone).
constexpr int64_t kNoChoice = -1;
constexpr int64_t kRefreshChoice = -2;

// A per-prompt quota, the partition-matroid constraint of a batch: at most `limit` chosen pairs
// per prompt, a pair counting once against each distinct prompt of its two responses (a
// cross-prompt pair against both). prompt_of (n) maps a response to its prompt in
// [0, prompts); offsets (prompts + 1) and pairs (offsets[prompts]) are the CSR index of this
// process's pairs by prompt, built once (local pair indices, ascending within a prompt, a
// cross-prompt pair under both of its prompts); used (prompts) counts each prompt's chosen
// pairs. greedy_apply counts every applied choice and, the moment a prompt's count reaches
// `limit`, masks (NaN) every local pair of that prompt: O(pairs of that prompt), the sweep's
// own masking, so every sweep (dense, lazy, CUDA, a shard's) agrees. limit 0: no quota.
struct PromptQuota {
  int64_t limit = 0;
  int64_t prompts = 0;
  const int64_t* prompt_of = nullptr;
  const int64_t* offsets = nullptr;
  const int64_t* pairs = nullptr;
  int64_t* used = nullptr;
};

// What the greedy engine optimises: sum over E members of log det(F0_e + sum_S w_e,k d_e,k
// d_e,k^T), E = 1 for a single model. Member e's features start member_stride elements after
// member 0's (0: all members share one matrix); weights are (count, E), a pair's members side by
// side, so one sweep reads each pair's state from one place (or they are computed from rewards:
// `fisher`). The pairs may be one shard of a larger pool: pair k here is pair first_index + k
// globally. A step whose chosen pair's running
// score differs from its fresh value by more than refresh_tolerance (relative; 0: never) stops
// the engine with kRefreshChoice. `quota` (optional) limits the chosen pairs per prompt.
struct GreedyProblem {
  FeatureView features;
  int64_t members;
  int64_t member_stride;
  PairView pairs;
  const double* weights;  // (count, E); null with no `fisher` either: every weight is 1
  int64_t first_index;
  double refresh_tolerance;
  PromptQuota quota = {};  // none unless set
  RewardWeights fisher = {};  // set: weights are computed from rewards, `weights` is unused
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

// Calls fn(T{}, I{}) with T float or double (rewards; features: dispatch_features) and I the
// pair index type.
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
