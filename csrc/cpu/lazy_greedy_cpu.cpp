// The exact lazy sweep of the CPU greedy engine (see lazy_greedy_cpu.h).
#include "lazy_greedy_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

#include "activerm/cpu_kernels.h"
#include "activerm/greedy_loop.h"
#include "activerm/greedy_workspace.h"
#include "activerm/pair_math.h"
#include "one_shot_work_cpu.h"
#include "team_tuner_cpu.h"

namespace activerm {

namespace {

// Buckets of bounds: 2^kFineBits per factor of two below the largest bound at the start, for
// kOctaves factors of two; one last bucket holds everything smaller, zero and negative bounds.
constexpr int kFineBits = 4;
constexpr int64_t kOctaves = 64;
constexpr int64_t kBuckets = (kOctaves << kFineBits) + 1;
// Candidates below which a bucket is refreshed on one thread.
constexpr int64_t kParallelRecords = 4096;
// Records refreshed together (one member), groups per chunk of a thread, and records ahead whose
// kept projections are fetched while a group is refreshed.
constexpr int64_t kGroup = 8;
constexpr int64_t kGroupChunk = 256;
constexpr int64_t kPrefetchAhead = 8;
constexpr int64_t kStreamAhead = 32;
// Downdates below which a bucket's refresh runs on one thread.
constexpr int64_t kParallelDowndates = 1 << 16;

// A candidate's record: this head, then q_e and w_e of its E members (doubles).
struct Head {
  uint32_t index;  // local pair index
  uint32_t stamp;  // downdates applied to q since the last rebuild
  int32_t first;
  int32_t second;
};
constexpr int64_t kHeadSlots = sizeof(Head) / sizeof(double);
static_assert(sizeof(Head) == 2 * sizeof(double), "a head fills two double slots");

Head head_of(const double* record) {
  Head head;
  std::memcpy(&head, record, sizeof(Head));
  return head;
}

uint64_t bits_of(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}

// A pair's score (the dense sweep's) and its bound: the combined score of max(w_e q_e, 0).
// With one member the bound is max(score, 0); with several, the clamp keeps every product in
// combined_score non-negative, where rounding is monotone, so no later (smaller) q_e gives a
// larger score.
template <bool kSingle>
void score_and_bound(const double* q, const double* w, int64_t members, double& score,
                     double& bound) {
  const int64_t count = kSingle ? 1 : members;
  for (int64_t e = 0; e < count; ++e) {
    const double x = w[e] * q[e];
    const double clamped = std::fmax(x, 0.0);
    score = e == 0 ? x : combined_score(score, x);
    bound = e == 0 ? clamped : combined_score(bound, clamped);
  }
}

// Applies to one record's q (E members) the downdates it missed from its stamp up to `until`,
// in step order: the dense sweep's arithmetic, from its responses' kept projections.
inline void catch_up(double* q, const Head& head, int64_t members, int64_t until,
                     int64_t capacity, const double* history, const double* coefficients) {
  const double* vi = history + static_cast<int64_t>(head.first) * capacity * members;
  const double* vj = history + static_cast<int64_t>(head.second) * capacity * members;
  for (int64_t t = head.stamp; t < until; ++t) {
    for (int64_t m = 0; m < members; ++m) {
      q[m] = downdated_quadform(q[m], coefficients[t * members + m], vi[t * members + m],
                                vj[t * members + m]);
    }
  }
}

// Brings kGroup records up to date (neighbours in a bucket have close stamps): each alone up to
// the group's latest stamp, then all together, so kGroup x E independent chains of subtractions
// hide each other's latency. kMembers is E, or 0 where E is known at run time only; each chain
// applies its downdates in step order, so the result does not depend on the grouping.
template <int kMembers>
void refresh_group(double* const* record, const Head* head, int64_t members, int64_t steps,
                   int64_t capacity, const double* history, const double* coefficients) {
  const int64_t e = kMembers > 0 ? kMembers : members;
  int64_t together = 0;
  for (int64_t g = 0; g < kGroup; ++g) together = std::max<int64_t>(together, head[g].stamp);
  double q[kGroup * (kMembers > 0 ? kMembers : kMaxMembers)];
  const double* vi[kGroup];
  const double* vj[kGroup];
  for (int64_t g = 0; g < kGroup; ++g) {
    catch_up(record[g] + kHeadSlots, head[g], e, together, capacity, history, coefficients);
    for (int64_t m = 0; m < e; ++m) q[g * e + m] = record[g][kHeadSlots + m];
    vi[g] = history + static_cast<int64_t>(head[g].first) * capacity * e;
    vj[g] = history + static_cast<int64_t>(head[g].second) * capacity * e;
  }
  for (int64_t t = together; t < steps; ++t) {
    const double* c = coefficients + t * e;
    // several members' rows outrun the hardware prefetchers (one member's do not)
    if (kMembers != 1 && (t * e) % 8 < e) {
      for (int64_t g = 0; g < kGroup; ++g) {
        __builtin_prefetch(vi[g] + (t + kStreamAhead) * e);
        __builtin_prefetch(vj[g] + (t + kStreamAhead) * e);
      }
    }
    for (int64_t g = 0; g < kGroup; ++g) {
      for (int64_t m = 0; m < e; ++m) {
        q[g * e + m] = downdated_quadform(q[g * e + m], c[m], vi[g][t * e + m], vj[g][t * e + m]);
      }
    }
  }
  for (int64_t g = 0; g < kGroup; ++g) {
    for (int64_t m = 0; m < e; ++m) record[g][kHeadSlots + m] = q[g * e + m];
  }
}

// Hands items [0, count) places in buckets, in item order within every bucket (a counting sort
// on `threads` threads, each over its own static range): target(item) is the item's bucket,
// `first` or later (-1: none); first_places(b, counts) gets the threads' counts of bucket b, in
// thread order, for every bucket from `first` to the last one targeted, and turns them into
// each thread's first place there; place(thread, item, b, position) receives every item's
// place. `places` is scratch.
template <class Target, class FirstPlaces, class Place>
void scatter_to_buckets(int64_t count, int threads, int64_t first, Target&& target,
                        FirstPlaces&& first_places, Place&& place, std::vector<int64_t>& places) {
  places.assign(static_cast<size_t>(threads) * kBuckets, 0);
  std::vector<int64_t> last(static_cast<size_t>(threads), first - 1);
  auto range_of = [&](int thread) {
    return std::pair<int64_t, int64_t>(count * thread / threads, count * (thread + 1) / threads);
  };
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num();
    const auto [begin, end] = range_of(thread);
    int64_t* mine = places.data() + static_cast<int64_t>(thread) * kBuckets;
    int64_t latest = first - 1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = target(item);
      if (b < 0) continue;
      ++mine[b];
      latest = std::max(latest, b);
    }
    last[thread] = latest;
  }
  const int64_t end_bucket = *std::max_element(last.begin(), last.end()) + 1;
  std::vector<int64_t> column(static_cast<size_t>(threads));
  for (int64_t b = first; b < end_bucket; ++b) {
    for (int thread = 0; thread < threads; ++thread) {
      column[thread] = places[static_cast<size_t>(thread) * kBuckets + b];
    }
    first_places(b, column);
    for (int thread = 0; thread < threads; ++thread) {
      places[static_cast<size_t>(thread) * kBuckets + b] = column[thread];
    }
  }
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num();
    const auto [begin, end] = range_of(thread);
    int64_t* next = places.data() + static_cast<int64_t>(thread) * kBuckets;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = target(item);
      if (b >= 0) place(thread, item, b, next[b]++);
    }
  }
}

}  // namespace

LazyGreedyCpu::LazyGreedyCpu(const GreedyProblem& problem, int64_t capacity)
    : n_(problem.features.n),
      members_(problem.members),
      stride_(kHeadSlots + 2 * problem.members),
      capacity_(std::max<int64_t>(capacity, 0)),
      history_(static_cast<size_t>(problem.features.n * capacity_ * problem.members)),
      coefficients_(static_cast<size_t>(capacity_ * problem.members)),
      unrefreshed_start_(kBuckets + 1, 0),
      unrefreshed_taken_(kBuckets, 1),
      buckets_(kBuckets) {
  if (!supports(problem)) {
    throw std::invalid_argument(
        "the lazy sweep needs stored pairs and weights, fewer than 2^32 pairs and 2^31 responses");
  }
}

bool LazyGreedyCpu::supports(const GreedyProblem& problem) {
  // stored pairs and weights only: its records copy both (a pool of no pairs copies none)
  return problem.pairs.count < (int64_t{1} << 32) && problem.features.n < (int64_t{1} << 31) &&
         problem.pairs.implicit.kind == kStoredPairs &&
         (problem.weights != nullptr || problem.pairs.count == 0) &&
         problem.fisher.rewards == nullptr;
}

int64_t LazyGreedyCpu::memory_bound(const GreedyProblem& problem, int64_t capacity) {
  const int64_t e = problem.members;
  const int64_t p = problem.pairs.count;
  const int64_t record = 8 * (kHeadSlots + 2 * e);
  // projections and coefficients; unrefreshed indices; records (a refreshed bucket is rebuilt to
  // its size and a growing one at most doubles, plus the copy while one grows); per-record
  // scratch of the largest bucket; bucket bookkeeping and per-thread places
  const int64_t threads = omp_get_max_threads();
  return 8 * capacity * e * (problem.features.n + 1) + 4 * p + 3 * record * p + 12 * p +
         (8 + 1 + 24 + 8 * threads) * (kBuckets + 1);
}

int64_t LazyGreedyCpu::bucket_of(double bound) const {
  if (!(bound > 0.0)) return kBuckets - 1;
  const uint64_t bits = bits_of(bound);
  if (bits >= top_bits_) return 0;
  // positive doubles order like their bit patterns: the gap counts 2^-kFineBits octaves
  const uint64_t gap = (top_bits_ - bits) >> (52 - kFineBits);
  return gap >= static_cast<uint64_t>(kBuckets - 1) ? kBuckets - 1 : static_cast<int64_t>(gap);
}

void LazyGreedyCpu::rebuild(const GreedyProblem& problem, GreedyState state) {
  const int64_t count = problem.pairs.count;
  const int64_t e = members_;
  const bool single = e == 1;
  auto bound_of = [&](int64_t k, double& bound) {
    double score = 0.0;
    if (single) score_and_bound<true>(state.scores + k, problem.weights + k, 1, score, bound);
    else score_and_bound<false>(state.scores + k * e, problem.weights + k * e, e, score, bound);
    return !std::isnan(score);
  };
  double top = 0.0;
#pragma omp parallel for schedule(static) reduction(max : top) \
    if (count * e >= kOneShotParallelWork / kPairWork)
  for (int64_t k = 0; k < count; ++k) {
    double bound = 0.0;
    if (bound_of(k, bound)) top = std::max(top, bound);
  }
  top_bits_ = bits_of(top);
  // Every bucket lists its pairs in index order.
  auto bucket_of_pair = [&](int64_t k) {
    double bound = 0.0;
    return bound_of(k, bound) ? bucket_of(bound) : int64_t{-1};
  };
  int64_t total = 0;
  auto first_places = [&](int64_t b, std::vector<int64_t>& counts) {
    unrefreshed_start_[b] = total;
    for (int64_t& c : counts) total += std::exchange(c, total);
    unrefreshed_start_[b + 1] = total;
  };
  unrefreshed_.resize(static_cast<size_t>(count));  // at most every pair
  std::fill(unrefreshed_start_.begin(), unrefreshed_start_.end(), 0);
  scatter_to_buckets(
      count, omp_get_max_threads(), 0, bucket_of_pair, first_places,
      [&](int, int64_t k, int64_t, int64_t position) {
        unrefreshed_[position] = static_cast<uint32_t>(k);
      },
      places_);
  // buckets past the last one targeted start (and end) at the end
  for (int64_t b = 1; b <= kBuckets; ++b) {
    unrefreshed_start_[b] = std::max(unrefreshed_start_[b], unrefreshed_start_[b - 1]);
  }
  unrefreshed_.resize(static_cast<size_t>(total));
  std::fill(unrefreshed_taken_.begin(), unrefreshed_taken_.end(), 0);
  for (auto& bucket : buckets_) bucket.clear();
  steps_ = 0;
  last_.index = -1;
}

void LazyGreedyCpu::record_step(const GreedyBuffers& buffers) {
  if (steps_ >= capacity_) {
    throw std::length_error("the lazy sweep was asked for more steps than its capacity");
  }
  const int64_t e = members_;
  for (int64_t r = 0; r < n_; ++r) {
    for (int64_t m = 0; m < e; ++m) {
      history_[(r * capacity_ + steps_) * e + m] = buffers.projection[r * e + m];
    }
  }
  for (int64_t m = 0; m < e; ++m) coefficients_[steps_ * e + m] = buffers.downdate[m];
  ++steps_;
}

void LazyGreedyCpu::take_unrefreshed(const GreedyProblem& problem, GreedyState state,
                                     int64_t bucket) {
  if (unrefreshed_taken_[bucket]) return;
  unrefreshed_taken_[bucket] = 1;
  const int64_t begin = unrefreshed_start_[bucket];
  const int64_t added = unrefreshed_start_[bucket + 1] - begin;
  if (added == 0) return;
  std::vector<double>& records = buckets_[bucket];
  const int64_t offset = static_cast<int64_t>(records.size());
  records.resize(static_cast<size_t>(offset + added * stride_));
  const int64_t e = members_;
  const bool wide = problem.pairs.is_int64;
  const void* pairs = problem.pairs.data;
#pragma omp parallel for schedule(static) if (added >= kParallelRecords)
  for (int64_t r = 0; r < added; ++r) {
    const int64_t k = unrefreshed_[begin + r];
    double* record = records.data() + offset + r * stride_;
    const int64_t first = wide ? static_cast<const int64_t*>(pairs)[2 * k]
                               : static_cast<const int32_t*>(pairs)[2 * k];
    const int64_t second = wide ? static_cast<const int64_t*>(pairs)[2 * k + 1]
                                : static_cast<const int32_t*>(pairs)[2 * k + 1];
    const Head head{static_cast<uint32_t>(k), 0, static_cast<int32_t>(first),
                    static_cast<int32_t>(second)};
    std::memcpy(record, &head, sizeof(Head));
    for (int64_t m = 0; m < e; ++m) {
      record[kHeadSlots + m] = state.scores[k * e + m];
      record[kHeadSlots + e + m] = problem.weights[k * e + m];
    }
  }
}

void LazyGreedyCpu::bring_up_to_date(int64_t bucket) {
  std::vector<double>& records = buckets_[bucket];
  const int64_t count = static_cast<int64_t>(records.size()) / stride_;
  const int64_t e = members_;
  const int64_t steps = steps_;
  const int64_t stride = stride_;
  const int64_t capacity = capacity_;
  double* base = records.data();
  const double* history = history_.data();
  const double* coefficients = coefficients_.data();
  // Every record applies the downdates it missed in step order, with the dense sweep's
  // arithmetic, reading its two responses' kept projections as two runs in memory; records go
  // kGroup at a time (refresh_group) while the next groups' runs are fetched.
  int64_t applied = 0;
  for (int64_t r = 0; r < count; ++r) applied += steps - head_of(base + r * stride).stamp;
  const int64_t groups = (count + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(dynamic, kGroupChunk) if (applied >= kParallelDowndates)
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t first = group * kGroup;
    const int64_t size = std::min(kGroup, count - first);
    for (int64_t r = first + kPrefetchAhead; r < std::min(count, first + kPrefetchAhead + size); ++r) {
      const Head ahead = head_of(base + r * stride);
      __builtin_prefetch(history + (ahead.first * capacity + ahead.stamp) * e);
      __builtin_prefetch(history + (ahead.second * capacity + ahead.stamp) * e);
    }
    double* record[kGroup];
    Head head[kGroup];
    for (int64_t g = 0; g < size; ++g) {
      record[g] = base + (first + g) * stride;
      head[g] = head_of(record[g]);
    }
    if (size < kGroup) {
      for (int64_t g = 0; g < size; ++g) {
        catch_up(record[g] + kHeadSlots, head[g], e, steps, capacity, history, coefficients);
      }
    } else {
      switch (e) {
        case 1: refresh_group<1>(record, head, e, steps, capacity, history, coefficients); break;
        case 2: refresh_group<2>(record, head, e, steps, capacity, history, coefficients); break;
        case 3: refresh_group<3>(record, head, e, steps, capacity, history, coefficients); break;
        case 4: refresh_group<4>(record, head, e, steps, capacity, history, coefficients); break;
        case 5: refresh_group<5>(record, head, e, steps, capacity, history, coefficients); break;
        default: refresh_group<0>(record, head, e, steps, capacity, history, coefficients);
      }
    }
    for (int64_t g = 0; g < size; ++g) {
      head[g].stamp = static_cast<uint32_t>(steps);
      std::memcpy(record[g], &head[g], sizeof(Head));
    }
  }
  refreshed_ += count;
  downdates_ += applied;
}

void LazyGreedyCpu::refresh_bucket(int64_t bucket, Best& best) {
  std::vector<double>& records = buckets_[bucket];
  const int64_t count = static_cast<int64_t>(records.size()) / stride_;
  if (count == 0) return;
  bring_up_to_date(bucket);
  const int64_t e = members_;
  const int64_t stride = stride_;
  double* base = records.data();
  scratch_scores_.resize(static_cast<size_t>(count));
  scratch_buckets_.resize(static_cast<size_t>(count));
  const bool single = e == 1;
  const double* masked = masked_;
#pragma omp parallel for schedule(static) if (count >= kParallelRecords)
  for (int64_t r = 0; r < count; ++r) {
    double* record = base + r * stride;
    const double* q = record + kHeadSlots;
    double score = 0.0;
    double bound = 0.0;
    if (single) score_and_bound<true>(q, q + e, 1, score, bound);
    else score_and_bound<false>(q, q + e, e, score, bound);
    if (masked != nullptr && std::isnan(masked[head_of(record).index * e])) {
      score = std::numeric_limits<double>::quiet_NaN();  // its prompt's quota is full
    }
    scratch_scores_[r] = score;
    scratch_buckets_[r] = std::isnan(score) ? -1 : static_cast<int32_t>(bucket_of(bound));
  }
  // Then drop the pairs that can never win, move the others to the bucket of their new bound
  // (this one or a lower one, in record order) and find the best, ties to the lowest index.
  // The best so far may be a record of this bucket (moved here earlier in this step): its new
  // place is noted as it moves.
  const int threads = count >= kParallelRecords ? omp_get_max_threads() : 1;
  std::vector<Best> bests(static_cast<size_t>(threads), Best{best.score, best.index, 0, 0});
  std::vector<double> kept;  // this bucket's records, rebuilt to their size
  auto destination_of = [&](int64_t b) -> std::vector<double>& {
    return b == bucket ? kept : buckets_[b];
  };
  auto first_places = [&](int64_t b, std::vector<int64_t>& counts) {
    std::vector<double>& destination = destination_of(b);
    int64_t place = static_cast<int64_t>(destination.size()) / stride;
    for (int64_t& c : counts) place += std::exchange(c, place);
    if (place * stride != static_cast<int64_t>(destination.size())) {
      destination.resize(static_cast<size_t>(place * stride));
    }
  };
  scatter_to_buckets(
      count, threads, bucket, [&](int64_t r) { return int64_t{scratch_buckets_[r]}; },
      first_places,
      [&](int thread, int64_t r, int64_t b, int64_t position) {
        const double* record = base + r * stride;
        std::memcpy(destination_of(b).data() + position * stride, record,
                    sizeof(double) * stride);
        const int64_t index = head_of(record).index;
        Best& local = bests[thread];
        if (index == best.index) {  // one record has it: one writer
          best.bucket = b;
          best.position = position;
        } else if (beats(scratch_scores_[r], index, local.score, local.index)) {
          local = {scratch_scores_[r], index, b, position};
        }
      },
      places_);
  for (const Best& local : bests) {
    if (beats(local.score, local.index, best.score, best.index)) best = local;
  }
  records.swap(kept);
}

void LazyGreedyCpu::sweep(const GreedyProblem& problem, GreedyState state, bool downdate) {
  const GreedyBuffers buffers = GreedyLayout(problem, 0).carve(state.workspace);
  // After a choice that is no pair there is nothing to downdate and nothing new to find.
  if (downdate && buffers.choice->index < 0) return;
  ++sweeps_;
  masked_ = problem.quota.limit > 0 ? state.scores : nullptr;
  if (downdate) {
    retire_last(problem, *buffers.choice);
    record_step(buffers);
  } else {
    buffers.reference[0] = 1.0;  // fresh scores: the next choice is the reference
    rebuild(problem, state);
  }
  Best best{-std::numeric_limits<double>::infinity(), -1, 0, 0};
  for (int64_t bucket = 0; bucket < kBuckets; ++bucket) {
    take_unrefreshed(problem, state, bucket);
    refresh_bucket(bucket, best);
    // every bound in a later bucket is below any score in this one or above
    if (best.index >= 0 && bucket_of(best.score) <= bucket) break;
  }
  last_ = best;
  GreedyChoice& choice = *buffers.choice;
  choice.score = best.score;
  choice.index = best.index < 0 ? -1 : problem.first_index + best.index;
  if (best.index < 0) return;
  const double* record = buckets_[best.bucket].data() + best.position * stride_;
  const Head head = head_of(record);
  choice.first = head.first;
  choice.second = head.second;
  for (int64_t m = 0; m < members_; ++m) choice.weights[m] = record[kHeadSlots + members_ + m];
}

void LazyGreedyCpu::retire_last(const GreedyProblem& problem, const GreedyChoice& applied) {
  // the pair just applied leaves the race if it was this shard's: a NaN q never wins
  if (last_.index >= 0 && applied.index == problem.first_index + last_.index) {
    buckets_[last_.bucket][last_.position * stride_ + kHeadSlots] =
        std::numeric_limits<double>::quiet_NaN();
  }
  last_.index = -1;
}

void LazyGreedyCpu::run(const GreedyProblem& problem, GreedyState state, int64_t k,
                        int64_t* chosen, double* gains) {
  run_steps(
      k, [&](bool downdate) { sweep(problem, state, downdate); },
      [&](int64_t t, bool prepare_next) {
        CpuKernels::greedy_apply(problem, state, t, chosen, gains, prepare_next, nullptr);
      },
      TeamTuner());
}

}  // namespace activerm
