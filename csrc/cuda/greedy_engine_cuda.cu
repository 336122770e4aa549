// The greedy log-det engine on the GPU: the arithmetic of greedy_engine_cpu.cpp operation for
// operation, with every step on the device, so the host enqueues all k steps without waiting and
// each kernel reads the current choice (the GreedyChoice at the start of the workspace) from
// device memory. greedy_apply enqueues, for all E members at once:
//   1. difference_kernel:  d*_e = scaled phi_i - phi_j of the chosen pair;
//   2. transposed_kernel:  f_e = S_e^T d*_e;
//   3. scalars_kernel:     q*_e = f_e.f_e afresh, the gain, c_e and gamma_e; records the choice
//                          and masks its scores (or stops the engine for a refresh);
//      quota_kernel:       with a per-prompt quota, counts the choice and masks full prompts;
//   4. rows_kernel:        u_e = S_e f_e;
//   5. update_kernel:      S_e -= gamma_e u_e f_e^T;
//   6. rows_kernel:        v_e = Phi_e (scale u_e), the one O(n d) read;
// and greedy_sweep the sweep_kernel: q_e,k -= c_e (v_e,i - v_e,j)^2 for every pair, fused with
// the argmax of the combined score; its last block reduces the per-block winners into the choice.
// Dot products keep the CPU's order of summation (one accumulator, index 0 to d - 1): tiles are
// staged in shared memory so global reads are coalesced, then one thread adds up a row in order.
// With FMA contraction off (CMakeLists.txt) every number is bit-identical to the CPU's, so the two
// backends break ties between equal scores the same way. When the choice is no pair (kNoChoice,
// kRefreshChoice) every kernel leaves the state alone.
#include <algorithm>
#include <cstddef>
#include <cub/block/block_reduce.cuh>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "activerm/cuda_kernels.h"
#include "activerm/greedy_loop.h"
#include "activerm/greedy_workspace.h"
#include "activerm/pair_math.h"
#include "activerm/pair_source.h"
#include "cuda_common.cuh"

namespace activerm {

namespace {

using cuda::check_launch;
using cuda::grid_for;

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The sweep streams pairs, weights and scores once per step: enough independent loads per thread
// (kSweepUnroll pairs) and one full wave of blocks keep DRAM busy.
constexpr int kSweepThreads = 256;
constexpr int kSweepUnroll = 4;
constexpr int64_t kSweepTile = kSweepThreads * kSweepUnroll;
constexpr int kSweepMinBlocksPerSm = 5;  // 48 registers, no spills: more warps hide the gathers
constexpr int kMaxSweepBlocks = 2048;

// Row dots (u = S f, v = Phi u): a block stages the terms of kRowsTile rows x kRowsCols
// columns (warps read 32 consecutive columns of one row) and thread r adds up row r.
constexpr int kRowsTile = 128;
constexpr int kRowsCols = 32;
constexpr int kRowsStride = kRowsTile / kRowsCols;
static_assert(kRowsTile % kRowsCols == 0, "a thread keeps one tile column");

// Column dots (f = S^T d*): a block owns kColumns columns; its threads stage kColumnRows rows
// of terms at a time and thread c adds up column c in row order.
constexpr int kColumns = 32;
constexpr int kColumnThreads = 256;
constexpr int kColumnRows = 128;
constexpr int kColumnLanes = kColumnThreads / kColumns;
static_assert(kColumnRows % kColumnLanes == 0, "whole loads per thread");

constexpr int kScalarThreads = 256;
constexpr int kUpdateThreads = 256;
constexpr int kElementThreads = 256;
constexpr int64_t kMaxGridY = 65535;

struct Candidate {
  double score;
  int64_t index;  // local; -1: none
};

// The CUDA engine's own scratch, after the common buffers of greedy_workspace.h.
// The launch layer hands the workspace over zeroed, so the first sweep finds the counter at 0.
struct SweepScratch {
  unsigned int sweep_done;  // blocks of sweep_kernel finished (reset by the last)
  unsigned int padding;
  double factor_update[kMaxMembers];  // gamma_e of the last choice
  Candidate partials[kMaxSweepBlocks];  // best pair of each sweep block
};

__device__ __forceinline__ Candidate no_candidate() { return {-kInfinity, -1}; }

// Keeps the better of best and (score, index) by beats(): larger score, then lower index; NaN
// (masked) and -inf scores never enter, so the result does not depend on the visiting order.
__device__ __forceinline__ void offer(Candidate& best, double score, int64_t index) {
  if (beats(score, index, best.score, best.index)) best = {score, index};
}

struct BetterCandidate {
  __device__ __forceinline__ Candidate operator()(const Candidate& a, const Candidate& b) const {
    return beats(b.score, b.index, a.score, a.index) ? b : a;
  }
};

// Pair k as two indices, one 8- or 16-byte load when the array is aligned for it.
template <bool kVector, class I>
__device__ __forceinline__ void load_pair(const I* pairs, int64_t k, int64_t& i, int64_t& j) {
  if constexpr (kVector && sizeof(I) == 4) {
    const int2 pair = __ldcs(reinterpret_cast<const int2*>(pairs) + k);
    i = pair.x;
    j = pair.y;
  } else if constexpr (kVector) {
    const longlong2 pair = __ldcs(reinterpret_cast<const longlong2*>(pairs) + k);
    i = pair.x;
    j = pair.y;
  } else {
    i = __ldcs(pairs + 2 * k);
    j = __ldcs(pairs + 2 * k + 1);
  }
}

// Pair k of stored pairs (one vector load when aligned) or of a generated pool.
template <bool kVector, class Pairs>
__device__ __forceinline__ void fetch_pair(const Pairs& pairs, int64_t k, int64_t& i, int64_t& j) {
  if constexpr (Pairs::kGenerated) pairs(k, i, j);
  else load_pair<kVector>(pairs.data, k, i, j);
}

// Member e's weight of pair k: a streamed (evict-first) load of a stored one, else the
// reader's own (computed from the rewards, or 1).
template <class Weights>
__device__ __forceinline__ double fetch_weight(const Weights& weights, int64_t k, int64_t e,
                                               int64_t i, int64_t j) {
  if constexpr (std::is_same_v<Weights, StoredWeights>) {
    return __ldcs(weights.data + k * weights.members + e);
  } else {
    return weights(k, e, i, j);
  }
}

// Everything a sweep kernel reads besides the pairs and weights.
struct SweepArgs {
  int64_t count;
  int64_t members;
  int64_t first_index;
  double* scores;            // (count, E)
  const double* projection;  // (n, E)
  const double* downdate;    // (E)
  double* reference;         // (1 + E)
  GreedyChoice* choice;
  SweepScratch* scratch;
};

// One pass over all pairs: with kDowndate, q_e,k -= c_e (v_e,i - v_e,j)^2 (written back); then
// the pair with the largest combined score goes to the choice. Streams use evict-first loads and
// stores so the gathered v (8 E n bytes) stays in L2. A generated pool may hold a pair twice:
// the downdate after a choice masks every copy of the chosen pair, as on the CPU.
template <bool kDowndate, bool kSingle, bool kVector, class Pairs, class Weights>
__global__ void __launch_bounds__(kSweepThreads, kSweepMinBlocksPerSm)
    sweep_kernel(Pairs pairs, Weights weights, SweepArgs args) {
  using BlockReduce = cub::BlockReduce<Candidate, kSweepThreads>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ bool last_block;

  // After a "none" choice there is nothing to downdate and nothing new to find.
  if (kDowndate && args.choice->index < 0) return;
  const int64_t count = args.count;
  const int64_t members = kSingle ? 1 : args.members;
  constexpr bool kNeedPairs = kDowndate || Weights::kFromRewards;
  int64_t last_first = -1;
  int64_t last_second = -1;
  if constexpr (kDowndate && Pairs::kGenerated) {
    last_first = args.choice->first;
    last_second = args.choice->second;
  }
  Candidate best = no_candidate();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kSweepTile;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kSweepTile + threadIdx.x; base < count;
       base += stride) {
    int64_t i[kSweepUnroll];
    int64_t j[kSweepUnroll];
    bool repeat[kSweepUnroll];
#pragma unroll
    for (int u = 0; u < kSweepUnroll; ++u) {
      i[u] = 0;
      j[u] = 0;
      repeat[u] = false;
    }
    if constexpr (kNeedPairs) {
#pragma unroll
      for (int u = 0; u < kSweepUnroll; ++u) {
        const int64_t k = base + u * kSweepThreads;
        if (k < count) fetch_pair<kVector>(pairs, k, i[u], j[u]);
        if constexpr (kDowndate && Pairs::kGenerated) {
          repeat[u] = i[u] == last_first && j[u] == last_second;
        }
      }
    }
    double score[kSweepUnroll] = {};
    for (int64_t e = 0; e < members; ++e) {
      double q[kSweepUnroll];
      double w[kSweepUnroll];
#pragma unroll
      for (int u = 0; u < kSweepUnroll; ++u) {
        const int64_t k = base + u * kSweepThreads;
        q[u] = 0.0;
        w[u] = 0.0;
        if (k < count) {
          q[u] = __ldcs(args.scores + k * members + e);
          w[u] = fetch_weight(weights, k, e, i[u], j[u]);
        }
      }
      if constexpr (kDowndate) {
        // All loads of the tile are issued before the first store, whose asm is a compiler
        // memory barrier, so the gathers of the kSweepUnroll pairs overlap.
        const double coefficient = args.downdate[e];
        double v_i[kSweepUnroll];
        double v_j[kSweepUnroll];
#pragma unroll
        for (int u = 0; u < kSweepUnroll; ++u) {
          v_i[u] = 0.0;
          v_j[u] = 0.0;
          if (base + u * kSweepThreads < count) {
            v_i[u] = __ldg(args.projection + i[u] * members + e);
            v_j[u] = __ldg(args.projection + j[u] * members + e);
          }
        }
#pragma unroll
        for (int u = 0; u < kSweepUnroll; ++u) {
          const int64_t k = base + u * kSweepThreads;
          if (k < count) {
            q[u] = repeat[u] ? kNaN : downdated_quadform(q[u], coefficient, v_i[u], v_j[u]);
            __stcs(args.scores + k * members + e, q[u]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kSweepUnroll; ++u) {
        const double x = w[u] * q[u];
        score[u] = e == 0 ? x : combined_score(score[u], x);
      }
    }
#pragma unroll
    for (int u = 0; u < kSweepUnroll; ++u) {
      const int64_t k = base + u * kSweepThreads;
      if (k < count) offer(best, score[u], k);
    }
  }

  const Candidate block_best = BlockReduce(reduce_storage).Reduce(best, BetterCandidate{});
  SweepScratch* scratch = args.scratch;
  if (threadIdx.x == 0) {
    scratch->partials[blockIdx.x] = block_best;
    __threadfence();  // publish the partial before counting this block as done
    last_block = atomicAdd(&scratch->sweep_done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last_block) return;

  // The last block to finish sees every partial and writes the overall winner as the choice.
  __threadfence();
  Candidate overall = no_candidate();
  for (unsigned b = threadIdx.x; b < gridDim.x; b += kSweepThreads) {
    offer(overall, __ldcg(&scratch->partials[b].score), __ldcg(&scratch->partials[b].index));
  }
  overall = BlockReduce(reduce_storage).Reduce(overall, BetterCandidate{});
  if (threadIdx.x == 0) {
    GreedyChoice* choice = args.choice;
    scratch->sweep_done = 0;
    if (!kDowndate) args.reference[0] = 1.0;  // fresh scores: the next choice is the reference
    choice->score = overall.score;
    choice->index = overall.index < 0 ? -1 : args.first_index + overall.index;
    if (overall.index >= 0) {
      int64_t first = 0;
      int64_t second = 0;
      fetch_pair<false>(pairs, overall.index, first, second);
      choice->first = first;
      choice->second = second;
      for (int64_t e = 0; e < args.members; ++e) {
        choice->weights[e] = fetch_weight(weights, overall.index, e, first, second);
      }
    }
  }
}

// d*_e = scaled phi_i - phi_j of the chosen pair (grid y: member).
template <class T>
__global__ void __launch_bounds__(kElementThreads)
    difference_kernel(const T* __restrict__ features, int64_t member_stride, int64_t d,
                      double scale, const GreedyChoice* __restrict__ choice,
                      double* __restrict__ difference) {
  if (choice->index < 0) return;
  const T* member = features + blockIdx.y * member_stride;
  const T* fi = member + choice->first * d;
  const T* fj = member + choice->second * d;
  double* out = difference + blockIdx.y * d;
  for (int64_t a = static_cast<int64_t>(blockIdx.x) * kElementThreads + threadIdx.x; a < d;
       a += static_cast<int64_t>(gridDim.x) * kElementThreads) {
    out[a] = scaled_difference(fi[a], fj[a], scale);
  }
}

// f_e = S_e^T d*_e: f_c sums S_ac d*_a over a in order (grid x: column blocks, y: member).
__global__ void __launch_bounds__(kColumnThreads)
    transposed_kernel(const double* __restrict__ factor, int64_t d,
                      const double* __restrict__ difference,
                      const GreedyChoice* __restrict__ choice, double* __restrict__ transformed) {
  __shared__ double terms[kColumnRows][kColumns + 1];  // +1: conflict-free column reads
  if (choice->index < 0) return;
  const double* matrix = factor + blockIdx.y * d * d;
  const double* x = difference + blockIdx.y * d;
  const int lane = threadIdx.x % kColumns;
  const int first_row = threadIdx.x / kColumns;
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * kColumns; c0 < d;
       c0 += static_cast<int64_t>(gridDim.x) * kColumns) {
    const int64_t c = c0 + lane;
    double acc = 0.0;
    for (int64_t a0 = 0; a0 < d; a0 += kColumnRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kColumnRows, d - a0));
      // Loads first (registers), then products: many loads in flight per thread.
      double values[kColumnRows / kColumnLanes];
#pragma unroll
      for (int m = 0; m < kColumnRows / kColumnLanes; ++m) {
        const int r = min(first_row + m * kColumnLanes, rows - 1);
        values[m] = c < d ? __ldg(matrix + (a0 + r) * d + c) : 0.0;
      }
#pragma unroll
      for (int m = 0; m < kColumnRows / kColumnLanes; ++m) {
        const int r = first_row + m * kColumnLanes;
        if (r < rows) terms[r][lane] = values[m] * x[a0 + r];
      }
      __syncthreads();
      if (threadIdx.x < kColumns && c < d) {
        for (int r = 0; r < rows; ++r) acc += terms[r][threadIdx.x];
      }
      __syncthreads();
    }
    if (threadIdx.x < kColumns && c < d) transformed[blockIdx.y * d + c] = acc;
  }
}

// One block: per member q*_e = f_e.f_e in order (terms in parallel, the sum by one thread), the
// gain and the fresh score; a drifted running score turns the choice into kRefreshChoice;
// otherwise c_e and gamma_e, the record of the step and the mask of the chosen pair's scores.
__global__ void __launch_bounds__(kScalarThreads)
    scalars_kernel(const double* __restrict__ transformed, int64_t d, int64_t members,
                   int64_t count, int64_t first_index, double refresh_tolerance,
                   GreedyChoice* choice, bool prepare_next, double* __restrict__ downdate,
                   double* __restrict__ reference,
                   SweepScratch* scratch, double* scores, int64_t step, int64_t* chosen,
                   double* gains) {
  __shared__ double products[kScalarThreads];
  __shared__ double q_star[kMaxMembers];
  const int64_t index = choice->index;
  if (index < 0) {
    if (threadIdx.x == 0) {
      chosen[step] = index;
      gains[step] = kNaN;
    }
    return;
  }
  for (int64_t e = 0; e < members; ++e) {
    const double* f = transformed + e * d;
    double sum = 0.0;
    for (int64_t c0 = 0; c0 < d; c0 += kScalarThreads) {
      const int width = static_cast<int>(std::min<int64_t>(kScalarThreads, d - c0));
      if (static_cast<int>(threadIdx.x) < width) {
        const double value = f[c0 + threadIdx.x];
        products[threadIdx.x] = value * value;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        for (int c = 0; c < width; ++c) sum += products[c];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) q_star[e] = sum;
  }
  if (threadIdx.x != 0) return;
  double gain = 0.0;
  double fresh = 0.0;
  const bool first = reference[0] != 0.0;
  bool fallen = false;
  for (int64_t e = 0; e < members; ++e) {
    const double x = choice->weights[e] * q_star[e];
    gain += log1p(x);
    fresh = e == 0 ? x : combined_score(fresh, x);
    if (first) reference[1 + e] = x;
    fallen = fallen || fell(x, reference[1 + e]);
  }
  reference[0] = 0.0;
  if (refresh_tolerance > 0.0 && (fallen || drifted(choice->score, fresh, refresh_tolerance))) {
    choice->index = kRefreshChoice;
    chosen[step] = kRefreshChoice;
    gains[step] = kNaN;
    return;
  }
  chosen[step] = index;
  gains[step] = gain;
  const int64_t local = index - first_index;
  if (local >= 0 && local < count) {
    for (int64_t e = 0; e < members; ++e) scores[local * members + e] = kNaN;
  }
  if (prepare_next) {
    for (int64_t e = 0; e < members; ++e) {
      downdate[e] = rank_one_coefficient(choice->weights[e], q_star[e]);
      scratch->factor_update[e] = factor_update_coefficient(choice->weights[e], q_star[e]);
    }
  }
}

// The per-prompt quota (views.h: PromptQuota), one block after scalars_kernel: thread 0 counts
// the applied choice against its prompts; every thread then masks its share of the pairs of a
// prompt that just became full (the CPU's count_against_quota).
constexpr int kQuotaThreads = 256;

__global__ void __launch_bounds__(kQuotaThreads)
    quota_kernel(PromptQuota quota, int64_t members, const GreedyChoice* __restrict__ choice,
                 double* scores) {
  __shared__ int64_t full[2];
  if (choice->index < 0) return;  // no pair, or a refresh pending: nothing was chosen
  if (threadIdx.x == 0) {
    const int64_t first = quota.prompt_of[choice->first];
    const int64_t second = quota.prompt_of[choice->second];
    full[0] = ++quota.used[first] == quota.limit ? first : -1;
    full[1] = -1;
    if (second != first) full[1] = ++quota.used[second] == quota.limit ? second : -1;
  }
  __syncthreads();
  for (int side = 0; side < 2; ++side) {
    const int64_t prompt = full[side];
    if (prompt < 0) continue;
    for (int64_t at = quota.offsets[prompt] + threadIdx.x; at < quota.offsets[prompt + 1];
         at += kQuotaThreads) {
      double* q = scores + quota.pairs[at] * members;
      for (int64_t e = 0; e < members; ++e) q[e] = kNaN;
    }
  }
}

// out_e = M_e (x_e * x_scale) for row-major (rows, cols) matrices (grid x: row blocks, y: member);
// x * x_scale is the CPU's scaled u, and x_scale = 1 is exact. Row r of member e goes to
// out[e * out_member + r * out_stride].
template <class T>
__global__ void __launch_bounds__(kRowsTile)
    rows_kernel(const T* __restrict__ matrix, int64_t matrix_stride, int64_t rows_total,
                int64_t cols, const double* __restrict__ x, double x_scale,
                const GreedyChoice* __restrict__ choice, int64_t out_member, int64_t out_stride,
                double* __restrict__ out) {
  __shared__ double terms[kRowsTile][kRowsCols + 1];  // +1: conflict-free row reads
  if (choice->index < 0) return;
  const T* member = matrix + blockIdx.y * matrix_stride;
  const double* vector = x + blockIdx.y * cols;
  double* result = out + blockIdx.y * out_member;
  const int column = threadIdx.x % kRowsCols;  // tile column this thread loads
  const int first_row = threadIdx.x / kRowsCols;  // and rows first_row + m kRowsStride
  const int row = threadIdx.x;                    // tile row this thread sums
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsTile; row0 < rows_total;
       row0 += static_cast<int64_t>(gridDim.x) * kRowsTile) {
    const int rows = static_cast<int>(std::min<int64_t>(kRowsTile, rows_total - row0));
    const T* block_rows = member + row0 * cols;
    double acc = 0.0;
    for (int64_t a0 = 0; a0 < cols; a0 += kRowsCols) {
      const int width = static_cast<int>(std::min<int64_t>(kRowsCols, cols - a0));
      if (column < width) {
        // All loads of the tile first (registers), then the products: a thread has
        // kRowsCols loads in flight instead of the few the compiler would overlap.
        // Rows past the end reload the last row: unpredicated loads are scheduled together.
        const int64_t a = a0 + column;
        T values[kRowsCols];
#pragma unroll
        for (int m = 0; m < kRowsCols; ++m) {
          const int r = min(first_row + m * kRowsStride, rows - 1);
          values[m] = load_feature(block_rows + r * cols + a);
        }
        const double u = vector[a] * x_scale;
#pragma unroll
        for (int m = 0; m < kRowsCols; ++m) {
          const int r = first_row + m * kRowsStride;
          if (r < rows) terms[r][column] = static_cast<double>(values[m]) * u;
        }
      }
      __syncthreads();
      if (row < rows) {
        for (int c = 0; c < width; ++c) acc += terms[row][c];
      }
      __syncthreads();
    }
    if (row < rows) result[(row0 + row) * out_stride] = acc;
  }
}

// S_e -= (gamma_e u_e) f_e^T, element by element as on the CPU (grid y: rows, z: member).
__global__ void __launch_bounds__(kUpdateThreads)
    update_kernel(double* __restrict__ factor, const double* __restrict__ direction,
                  const double* __restrict__ transformed, int64_t d,
                  const GreedyChoice* __restrict__ choice,
                  const SweepScratch* __restrict__ scratch) {
  if (choice->index < 0) return;
  const int64_t e = blockIdx.z;
  const double gamma = scratch->factor_update[e];
  const double* u = direction + e * d;
  const double* f = transformed + e * d;
  double* matrix = factor + e * d * d;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kUpdateThreads;
  for (int64_t r = blockIdx.y; r < d; r += gridDim.y) {
    const double scaled = gamma * u[r];
    double* row = matrix + r * d;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * kUpdateThreads + threadIdx.x; c < d;
         c += stride) {
      row[c] -= scaled * f[c];
    }
  }
}

// The sweep blocks the current device holds at once, at most kMaxSweepBlocks: asked of the runtime
// once per device and kernel, since a selection enqueues thousands of sweeps and the queries cost
// about as much host time as a launch.
int64_t resident_sweep_blocks(const void* kernel) {
  static std::mutex mutex;
  static std::map<std::pair<int, const void*>, int64_t> known;
  int device = 0;
  cuda::check(cudaGetDevice(&device), "cudaGetDevice");
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = known.find({device, kernel});
  if (found != known.end()) return found->second;
  const int sms = cuda::current_device_attribute(cudaDevAttrMultiProcessorCount, "SM count query");
  int per_sm = 0;
  cuda::check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kSweepThreads, 0),
              "sweep occupancy query");
  const int64_t resident =
      std::clamp<int64_t>(static_cast<int64_t>(sms) * per_sm, 1, kMaxSweepBlocks);
  known.emplace(std::make_pair(device, kernel), resident);
  return resident;
}

// One wave of sweep blocks (grid-stride), at most kMaxSweepBlocks partials.
unsigned sweep_blocks(int64_t count, const void* kernel) {
  return static_cast<unsigned>(std::clamp<int64_t>((count + kSweepTile - 1) / kSweepTile, 1,
                                                   resident_sweep_blocks(kernel)));
}

GreedyBuffers buffers_of(const GreedyProblem& problem, GreedyState state) {
  if (state.workspace == nullptr || !cuda::aligned_to(state.workspace, alignof(GreedyChoice))) {
    throw std::invalid_argument(
        "greedy engine: workspace must be an 8-byte aligned device buffer of "
        "greedy_workspace_bytes(problem) bytes");
  }
  return GreedyLayout(problem, sizeof(SweepScratch)).carve(state.workspace);
}

template <class Pairs>
bool vector_aligned(const Pairs& pairs) {
  if constexpr (Pairs::kGenerated) return false;
  else return cuda::aligned_to(pairs.data, 2 * sizeof(*pairs.data));
}

template <bool kDowndate, bool kSingle, class Pairs, class Weights>
void launch_sweep(const GreedyProblem& problem, GreedyState state, const GreedyBuffers& buffers,
                  const Pairs& pairs, const Weights& weights, cudaStream_t stream) {
  const auto kernel = vector_aligned(pairs)
                          ? sweep_kernel<kDowndate, kSingle, true, Pairs, Weights>
                          : sweep_kernel<kDowndate, kSingle, false, Pairs, Weights>;
  // Both sweeps of a selection use one grid size, so they reduce the same partials.
  const auto downdating = sweep_kernel<true, kSingle, true, Pairs, Weights>;
  const auto fresh = sweep_kernel<false, kSingle, true, Pairs, Weights>;
  const unsigned grid =
      std::min(sweep_blocks(problem.pairs.count, reinterpret_cast<const void*>(downdating)),
               sweep_blocks(problem.pairs.count, reinterpret_cast<const void*>(fresh)));
  const SweepArgs args{problem.pairs.count, problem.members,   problem.first_index,
                       state.scores,        buffers.projection, buffers.downdate,
                       buffers.reference,   buffers.choice,
                       static_cast<SweepScratch*>(buffers.extra)};
  kernel<<<grid, kSweepThreads, 0, stream>>>(pairs, weights, args);
  check_launch("greedy sweep kernel launch");
}

template <class Pairs, class Weights>
void sweep(const GreedyProblem& problem, GreedyState state, bool downdate, const Pairs& pairs,
           const Weights& weights, cudaStream_t stream) {
  const GreedyBuffers buffers = buffers_of(problem, state);
  const bool single = problem.members == 1;
  if (downdate) {
    if (single) launch_sweep<true, true>(problem, state, buffers, pairs, weights, stream);
    else launch_sweep<true, false>(problem, state, buffers, pairs, weights, stream);
  } else {
    if (single) launch_sweep<false, true>(problem, state, buffers, pairs, weights, stream);
    else launch_sweep<false, false>(problem, state, buffers, pairs, weights, stream);
  }
}

template <class T>
void apply(const GreedyProblem& problem, GreedyState state, int64_t step, int64_t* chosen,
           double* gains, bool prepare_next, cudaStream_t stream) {
  const GreedyBuffers buffers = buffers_of(problem, state);
  auto* scratch = static_cast<SweepScratch*>(buffers.extra);
  const T* features = static_cast<const T*>(problem.features.data);
  const int64_t n = problem.features.n;
  const int64_t d = problem.features.d;
  const unsigned members = static_cast<unsigned>(problem.members);
  if (d > 0) {
    difference_kernel<T><<<dim3(grid_for(d, kElementThreads), members), kElementThreads, 0,
                           stream>>>(features, problem.member_stride, d, problem.features.scale,
                                     buffers.choice, buffers.difference);
    check_launch("greedy difference kernel launch");
    transposed_kernel<<<dim3(grid_for(d, kColumns), members), kColumnThreads, 0, stream>>>(
        state.factor, d, buffers.difference, buffers.choice, buffers.transformed);
    check_launch("greedy transposed product kernel launch");
  }
  scalars_kernel<<<1, kScalarThreads, 0, stream>>>(
      buffers.transformed, d, problem.members, problem.pairs.count, problem.first_index,
      problem.refresh_tolerance, buffers.choice, prepare_next, buffers.downdate,
      buffers.reference, scratch, state.scores, step, chosen, gains);
  check_launch("greedy scalars kernel launch");
  if (problem.quota.limit > 0) {
    quota_kernel<<<1, kQuotaThreads, 0, stream>>>(problem.quota, problem.members, buffers.choice,
                                                 state.scores);
    check_launch("greedy quota kernel launch");
  }
  if (!prepare_next || d == 0) return;
  rows_kernel<double><<<dim3(grid_for(d, kRowsTile), members), kRowsTile, 0, stream>>>(
      state.factor, d * d, d, d, buffers.transformed, 1.0, buffers.choice, d, 1,
      buffers.direction);
  check_launch("greedy direction kernel launch");
  const dim3 update_grid(grid_for(d, kUpdateThreads),
                         static_cast<unsigned>(std::clamp<int64_t>(d, 1, kMaxGridY)), members);
  update_kernel<<<update_grid, kUpdateThreads, 0, stream>>>(
      state.factor, buffers.direction, buffers.transformed, d, buffers.choice, scratch);
  check_launch("greedy factor update kernel launch");
  if (n > 0) {
    rows_kernel<T><<<dim3(grid_for(n, kRowsTile), members), kRowsTile, 0, stream>>>(
        features, problem.member_stride, n, d, buffers.direction, problem.features.scale,
        buffers.choice, 1, problem.members, buffers.projection);
    check_launch("greedy projection kernel launch");
  }
}

}  // namespace

int64_t CudaKernels::greedy_workspace_bytes(const GreedyProblem& problem) {
  return GreedyLayout(problem, sizeof(SweepScratch)).total;
}

// All of it: the sweep's block counter (in SweepScratch) must start at 0.
int64_t CudaKernels::greedy_zeroed_bytes(const GreedyProblem& problem) {
  return greedy_workspace_bytes(problem);
}

void CudaKernels::greedy_sweep(const GreedyProblem& problem, GreedyState state, bool downdate,
                               void* stream) {
  dispatch_sources(problem, [&](const auto& pairs, const auto& weights) {
    sweep(problem, state, downdate, pairs, weights, cuda::as_stream(stream));
  });
}

void CudaKernels::greedy_apply(const GreedyProblem& problem, GreedyState state, int64_t step,
                               int64_t* chosen, double* gains, bool prepare_next, void* stream) {
  const cudaStream_t s = cuda::as_stream(stream);
  dispatch_feature_type(problem.features.dtype, [&](auto t) {
    apply<decltype(t)>(problem, state, step, chosen, gains, prepare_next, s);
  });
}

void CudaKernels::greedy_run(const GreedyProblem& problem, GreedyState state, int64_t k,
                             int64_t* chosen, double* gains, void* stream) {
  run_greedy_steps<CudaKernels>(problem, state, k, chosen, gains, stream);
}

}  // namespace activerm
