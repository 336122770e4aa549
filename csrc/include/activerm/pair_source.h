// Where a kernel gets pair k and its Fisher weights: stored arrays, or computed on the spot, a
// generated pair from its counter (views.h: ImplicitPairs) and a weight from the rewards
// (RewardWeights), with the same arithmetic on the CPU and the GPU and in the NumPy twin
// (python/activerm_fast/data/implicit_pool.py).
#pragma once

#include <cstdint>

#include "activerm/pair_math.h"
#include "activerm/views.h"

namespace activerm {

// SplitMix64's output function: a bijection of 64-bit words whose outputs for consecutive
// inputs pass as independent uniform draws.
ARM_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

// Draw c of the stream of `key` (SplitMix64 at position c + 1).
ARM_HD uint64_t counter_draw(uint64_t key, uint64_t c) {
  return mix64(key + (c + 1) * kGoldenGamma);
}

// floor(h m / 2^64): a 64-bit draw mapped onto [0, m) by one multiply (no division).
ARM_HD int64_t draw_below(uint64_t h, int64_t m) {
#if defined(__CUDA_ARCH__)
  return static_cast<int64_t>(__umul64hi(h, static_cast<uint64_t>(m)));
#else
  return static_cast<int64_t>((static_cast<unsigned __int128>(h) * static_cast<uint64_t>(m)) >> 64);
#endif
}

// Global pair k of a generated pool, as (min, max) responses. Its first response is the
// (k spread)-th eligible one, so consecutive pairs share it and read its tables in order (one
// IEEE multiply, the same on every device); its partner is draw k of the pool's stream.
ARM_HD void implicit_pair(const ImplicitPairs& pool, int64_t k, int64_t& i, int64_t& j) {
  int64_t a = static_cast<int64_t>(static_cast<double>(k) * pool.spread);
  if (a >= pool.eligible) a = pool.eligible - 1;
  if (pool.draw_from != nullptr) a = pool.draw_from[a];
  const int64_t start = pool.runs[2 * a];
  const int64_t length = pool.runs[2 * a + 1] - start;
  const uint64_t h = counter_draw(pool.key, static_cast<uint64_t>(k));
  int64_t b;
  if (pool.kind == kCrossPromptPairs) {
    b = draw_below(h, pool.n - length);  // skip a's own run
    if (b >= start) b += length;
  } else {
    b = start + draw_below(h, length - 1);  // skip a itself
    if (b >= a) b += 1;
  }
  const int64_t x = pool.order == nullptr ? a : pool.order[a];
  const int64_t y = pool.order == nullptr ? b : pool.order[b];
  i = x < y ? x : y;
  j = x < y ? y : x;
}

// Pair k of a view whose pairs are stored as I (int32, int64).
template <class I>
struct StoredPairs {
  static constexpr bool kGenerated = false;
  const I* data;
  ARM_HD void operator()(int64_t k, int64_t& i, int64_t& j) const {
    i = static_cast<int64_t>(data[2 * k]);
    j = static_cast<int64_t>(data[2 * k + 1]);
  }
};

// Local pair k of a generated view.
struct GeneratedPairs {
  static constexpr bool kGenerated = true;
  ImplicitPairs pool;
  ARM_HD void operator()(int64_t k, int64_t& i, int64_t& j) const {
    implicit_pair(pool, pool.first + k, i, j);
  }
};

// Member e's weight of pair k = (i, j): stored (count, E) ...
struct StoredWeights {
  static constexpr bool kFromRewards = false;
  const double* data;
  int64_t members;
  ARM_HD double operator()(int64_t k, int64_t e, int64_t, int64_t) const {
    return data[k * members + e];
  }
};

// ... or all 1 (no weights given: x^T x designs, greedy_logdet without weights), a stream of
// P E doubles the sweep need not read ...
struct UnitWeights {
  static constexpr bool kFromRewards = false;
  ARM_HD double operator()(int64_t, int64_t, int64_t, int64_t) const { return 1.0; }
};

// ... or computed from the rewards, exactly as fisher_weights computes it (the mean of one row
// is that row's weight to the bit: 0 + w and w / 1 are w, so one row skips both).
struct ComputedWeights {
  static constexpr bool kFromRewards = true;
  RewardWeights fisher;
  ARM_HD double operator()(int64_t, int64_t e, int64_t i, int64_t j) const {
    const double* rows = fisher.rewards + e * fisher.rows * fisher.n;
    if (fisher.rows == 1) return bt_fisher_weight(rows[i] - rows[j]);
    return mean_fisher_weight(rows, fisher.rows, fisher.n, i, j);
  }
};

// Calls fn(pairs, weights) with the readers of the problem's pairs and weights.
template <class Fn>
void dispatch_sources(const GreedyProblem& problem, Fn&& fn) {
  auto with_weights = [&](auto pairs) {
    if (problem.fisher.rewards != nullptr) fn(pairs, ComputedWeights{problem.fisher});
    else if (problem.weights == nullptr) fn(pairs, UnitWeights{});
    else fn(pairs, StoredWeights{problem.weights, problem.members});
  };
  const PairView& pairs = problem.pairs;
  if (pairs.implicit.kind != kStoredPairs) with_weights(GeneratedPairs{pairs.implicit});
  else if (pairs.is_int64) with_weights(StoredPairs<int64_t>{static_cast<const int64_t*>(pairs.data)});
  else with_weights(StoredPairs<int32_t>{static_cast<const int32_t*>(pairs.data)});
}

}  // namespace activerm
