// Greedy log-det selection on the GPU: the algorithm of greedy_logdet_cpu.cpp step for step,
// with every operation on the device, so the host enqueues all k steps without waiting and each
// kernel reads the previous choice from device memory. One step, after a first plain sweep:
//   1. direction_kernel: d* = phi_i - phi_j of the chosen pair and u = F^-1 d*; its last block
//      computes q* = d*.u afresh, gain = log1p(w* q*), c = w* / (1 + w* q*), records the choice
//      and masks its score;
//   2. project_kernel:   v = Phi u, the one O(n d) read;
//   3. update_kernel:    F^-1 -= c u u^T;
//   4. sweep_kernel:     q_k -= c (v_i - v_j)^2 for every pair, fused with the argmax of w_k q_k;
//      its last block reduces the per-block winners to the next choice.
// Dot products keep the CPU's order of summation (one accumulator, index 0 to d - 1): tiles are
// staged in shared memory so global reads are coalesced, then one thread adds up a row in order.
// With FMA contraction off (CMakeLists.txt) every number is bit-identical to the CPU's, so the two
// backends break ties between equal scores the same way.
#include <algorithm>
#include <cstddef>
#include <cub/block/block_reduce.cuh>
#include <limits>
#include <stdexcept>

#include "activerm/cuda_kernels.h"
#include "activerm/pair_math.h"
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

// u = F^-1 d*: d rows of d doubles, kDirectionRows rows per block so that d = 1024 spreads over
// 256 blocks; a row's sum is a chain of d dependent adds, short next to the loads.
constexpr int kDirectionRows = 4;
constexpr int kDirectionCols = 1024;
constexpr int kDirectionThreads = 256;
constexpr int kDirectionLoads = kDirectionCols / kDirectionThreads;  // per thread and row
static_assert(kDirectionCols % kDirectionThreads == 0, "whole loads per thread");

// v = Phi u: a block stages the terms of kProjectRows rows x kProjectCols columns (warps read 32
// consecutive columns of one row) and thread r adds up row r.
constexpr int kProjectRows = 128;
constexpr int kProjectCols = 32;
constexpr int kProjectRowStride = kProjectRows / kProjectCols;
static_assert(kProjectRows % kProjectCols == 0, "a thread keeps one tile column");

constexpr int kUpdateThreads = 256;
constexpr int64_t kMaxGridY = 65535;

struct Candidate {
  double score;
  int64_t index;  // -1: none
};

// What the kernels of consecutive steps hand each other, in the caller's scratch buffer.
struct GreedyState {
  int64_t best;                         // pair chosen by the last sweep (-1: nothing selectable)
  double coefficient;                   // c = w* / (1 + w* q*) of the last choice
  unsigned int direction_done;          // blocks of direction_kernel finished (reset by the last)
  unsigned int sweep_done;              // blocks of sweep_kernel finished (reset by the last)
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

// One pass over all pairs: with kDowndate, q_k -= c (v_i - v_j)^2 (written back); then the pair
// with the largest w_k q_k goes to state->best. Streams use evict-first loads and stores so the
// gathered v (8 n bytes) stays in L2.
template <bool kDowndate, bool kVector, class I>
__global__ void __launch_bounds__(kSweepThreads, kSweepMinBlocksPerSm)
    sweep_kernel(const I* __restrict__ pairs, int64_t count, const double* __restrict__ weights,
                 double* __restrict__ quadforms, const double* __restrict__ projection,
                 GreedyState* state) {
  using BlockReduce = cub::BlockReduce<Candidate, kSweepThreads>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ bool last_block;

  const double coefficient = kDowndate ? state->coefficient : 0.0;
  Candidate best = no_candidate();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kSweepTile;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kSweepTile + threadIdx.x; base < count;
       base += stride) {
    double q[kSweepUnroll];
    double w[kSweepUnroll];
#pragma unroll
    for (int u = 0; u < kSweepUnroll; ++u) {
      const int64_t k = base + u * kSweepThreads;
      q[u] = 0.0;
      w[u] = 0.0;
      if (k < count) {
        q[u] = __ldcs(quadforms + k);
        w[u] = __ldcs(weights + k);
      }
    }
    if constexpr (kDowndate) {
      // All loads of the tile are issued before the first store, whose asm is a compiler
      // memory barrier, so the gathers of the kSweepUnroll pairs overlap.
      int64_t i[kSweepUnroll];
      int64_t j[kSweepUnroll];
#pragma unroll
      for (int u = 0; u < kSweepUnroll; ++u) {
        const int64_t k = base + u * kSweepThreads;
        i[u] = 0;
        j[u] = 0;
        if (k < count) load_pair<kVector>(pairs, k, i[u], j[u]);
      }
      double v_i[kSweepUnroll];
      double v_j[kSweepUnroll];
#pragma unroll
      for (int u = 0; u < kSweepUnroll; ++u) {
        v_i[u] = 0.0;
        v_j[u] = 0.0;
        if (base + u * kSweepThreads < count) {
          v_i[u] = __ldg(projection + i[u]);
          v_j[u] = __ldg(projection + j[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kSweepUnroll; ++u) {
        const int64_t k = base + u * kSweepThreads;
        if (k < count) {
          q[u] = downdated_quadform(q[u], coefficient, v_i[u], v_j[u]);
          __stcs(quadforms + k, q[u]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kSweepUnroll; ++u) {
      const int64_t k = base + u * kSweepThreads;
      if (k < count) offer(best, w[u] * q[u], k);
    }
  }

  const Candidate block_best = BlockReduce(reduce_storage).Reduce(best, BetterCandidate{});
  if (threadIdx.x == 0) {
    state->partials[blockIdx.x] = block_best;
    __threadfence();  // publish the partial before counting this block as done
    last_block = atomicAdd(&state->sweep_done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last_block) return;

  // The last block to finish sees every partial and picks the overall winner.
  __threadfence();
  Candidate overall = no_candidate();
  for (unsigned b = threadIdx.x; b < gridDim.x; b += kSweepThreads) {
    offer(overall, __ldcg(&state->partials[b].score), __ldcg(&state->partials[b].index));
  }
  overall = BlockReduce(reduce_storage).Reduce(overall, BetterCandidate{});
  if (threadIdx.x == 0) {
    state->best = overall.index;
    state->sweep_done = 0;
  }
}

// Step part 1: u = F^-1 d* for the pair in state->best, then (last block) the scalars of the
// step. Block b owns rows [kDirectionRows b, ...) of u and of d* (which it writes to difference).
template <class T, class I>
__global__ void __launch_bounds__(kDirectionThreads)
    direction_kernel(const T* __restrict__ features, int64_t d, const I* __restrict__ pairs,
                     const double* __restrict__ weights, double* quadforms,
                     const double* __restrict__ inverse, double* direction, double* difference,
                     GreedyState* state, int64_t step, int64_t* chosen, double* gains) {
  __shared__ double terms[kDirectionRows][kDirectionCols + 1];  // +1: conflict-free row reads
  __shared__ double chosen_diff[kDirectionCols];
  __shared__ bool last_block;

  // With nothing selectable (best = -1) d* = 0: u, v and the update vanish and nothing is read
  // out of bounds; the caller is expected to ask for at most as many pairs as can be chosen.
  const int64_t best = state->best;
  const T* fi = nullptr;
  const T* fj = nullptr;
  if (best >= 0) {
    fi = features + static_cast<int64_t>(pairs[2 * best]) * d;
    fj = features + static_cast<int64_t>(pairs[2 * best + 1]) * d;
  }
  const int row = threadIdx.x;  // the row of the group this thread sums, if < kDirectionRows
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * kDirectionRows; row0 < d;
       row0 += static_cast<int64_t>(gridDim.x) * kDirectionRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kDirectionRows, d - row0));
    double acc = 0.0;
    for (int64_t a0 = 0; a0 < d; a0 += kDirectionCols) {
      const int width = static_cast<int>(std::min<int64_t>(kDirectionCols, d - a0));
      for (int c = threadIdx.x; c < width; c += kDirectionThreads) {
        chosen_diff[c] =
            fi ? static_cast<double>(fi[a0 + c]) - static_cast<double>(fj[a0 + c]) : 0.0;
      }
      __syncthreads();
      // Every load in flight at once; out-of-range ones repeat an in-range address, since
      // unpredicated loads are the ones the compiler schedules together.
      double values[kDirectionRows][kDirectionLoads];
#pragma unroll
      for (int r = 0; r < kDirectionRows; ++r) {
#pragma unroll
        for (int m = 0; m < kDirectionLoads; ++m) {
          const int c = min(static_cast<int>(threadIdx.x) + m * kDirectionThreads, width - 1);
          values[r][m] = inverse[(row0 + min(r, rows - 1)) * d + a0 + c];
        }
      }
#pragma unroll
      for (int r = 0; r < kDirectionRows; ++r) {
#pragma unroll
        for (int m = 0; m < kDirectionLoads; ++m) {
          const int c = threadIdx.x + m * kDirectionThreads;
          if (r < rows && c < width) terms[r][c] = values[r][m] * chosen_diff[c];
        }
      }
      __syncthreads();
      if (row < rows) {
        for (int c = 0; c < width; ++c) acc += terms[row][c];
      }
      __syncthreads();
    }
    if (row < rows) {
      const int64_t a = row0 + row;
      direction[a] = acc;
      difference[a] = fi ? static_cast<double>(fi[a]) - static_cast<double>(fj[a]) : 0.0;
    }
  }

  __threadfence();  // publish this block's rows of u and d* before counting it as done
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(&state->direction_done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last_block) return;

  // Last block: q* = d*.u in order (terms in parallel, the sum by one thread), then the scalars.
  __threadfence();
  double* products = terms[0];
  double q_star = 0.0;
  for (int64_t a0 = 0; a0 < d; a0 += kDirectionCols) {
    const int width = static_cast<int>(std::min<int64_t>(kDirectionCols, d - a0));
    for (int c = threadIdx.x; c < width; c += kDirectionThreads) {
      products[c] = __ldcg(difference + a0 + c) * __ldcg(direction + a0 + c);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int c = 0; c < width; ++c) q_star += products[c];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    state->direction_done = 0;
    chosen[step] = best;
    if (best >= 0) {
      const double w_star = weights[best];
      gains[step] = log1p(w_star * q_star);
      quadforms[best] = kNaN;
      state->coefficient = rank_one_coefficient(w_star, q_star);
    } else {
      gains[step] = kNaN;
      state->coefficient = 0.0;
    }
  }
}

// Step part 2: v = Phi u.
template <class T>
__global__ void __launch_bounds__(kProjectRows)
    project_kernel(const T* __restrict__ features, int64_t n, int64_t d,
                   const double* __restrict__ direction, double* __restrict__ projection) {
  __shared__ double terms[kProjectRows][kProjectCols + 1];  // +1: conflict-free row reads
  const int column = threadIdx.x % kProjectCols;            // tile column this thread loads
  const int first_row = threadIdx.x / kProjectCols;  // and rows first_row + m kProjectRowStride
  const int row = threadIdx.x;                       // tile row this thread sums
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * kProjectRows; row0 < n;
       row0 += static_cast<int64_t>(gridDim.x) * kProjectRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kProjectRows, n - row0));
    const T* block_rows = features + row0 * d;
    double acc = 0.0;
    for (int64_t a0 = 0; a0 < d; a0 += kProjectCols) {
      const int width = static_cast<int>(std::min<int64_t>(kProjectCols, d - a0));
      if (column < width) {
        // All loads of the tile first (registers), then the products: a thread has
        // kProjectCols loads in flight instead of the few the compiler would overlap.
        // Rows past the end reload the last row: unpredicated loads are scheduled together.
        const int64_t a = a0 + column;
        T values[kProjectCols];
#pragma unroll
        for (int m = 0; m < kProjectCols; ++m) {
          const int r = min(first_row + m * kProjectRowStride, rows - 1);
          values[m] = __ldg(block_rows + r * d + a);
        }
        const double u = direction[a];
#pragma unroll
        for (int m = 0; m < kProjectCols; ++m) {
          const int r = first_row + m * kProjectRowStride;
          if (r < rows) terms[r][column] = static_cast<double>(values[m]) * u;
        }
      }
      __syncthreads();
      if (row < rows) {
        for (int c = 0; c < width; ++c) acc += terms[row][c];
      }
      __syncthreads();
    }
    if (row < rows) projection[row0 + row] = acc;
  }
}

// Step part 3: F^-1 -= c u u^T, element by element as on the CPU: row r loses (c u_r) u_a.
__global__ void __launch_bounds__(kUpdateThreads)
    update_kernel(double* __restrict__ inverse, const double* __restrict__ direction, int64_t d,
                  const GreedyState* __restrict__ state) {
  const double coefficient = state->coefficient;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kUpdateThreads;
  for (int64_t r = blockIdx.y; r < d; r += gridDim.y) {
    const double scaled = coefficient * direction[r];
    double* row = inverse + r * d;
    for (int64_t a = static_cast<int64_t>(blockIdx.x) * kUpdateThreads + threadIdx.x; a < d;
         a += stride) {
      row[a] -= scaled * direction[a];
    }
  }
}

// One wave of sweep blocks (grid-stride), at most kMaxSweepBlocks partials.
template <class Kernel>
unsigned sweep_blocks(int64_t count, Kernel kernel) {
  const int sms = cuda::current_device_attribute(cudaDevAttrMultiProcessorCount, "SM count query");
  int per_sm = 0;
  cuda::check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kSweepThreads, 0),
              "sweep occupancy query");
  const int64_t resident =
      std::clamp<int64_t>(static_cast<int64_t>(sms) * per_sm, 1, kMaxSweepBlocks);
  return static_cast<unsigned>(
      std::clamp<int64_t>((count + kSweepTile - 1) / kSweepTile, 1, resident));
}

template <class T, class I>
void run_greedy(FeatureView features, PairView pairs, GreedyWorkspace ws, int64_t k,
                int64_t* chosen, double* gains, cudaStream_t stream) {
  const T* f = static_cast<const T*>(features.data);
  const I* p = static_cast<const I*>(pairs.data);
  const int64_t n = features.n;
  const int64_t d = features.d;
  const int64_t count = pairs.count;
  auto* state = static_cast<GreedyState*>(ws.scratch);
  cuda::check(cudaMemsetAsync(state, 0, offsetof(GreedyState, partials), stream),
              "greedy scratch memset");

  const bool vector = cuda::aligned_to(p, 2 * sizeof(I));
  const auto first_sweep = vector ? sweep_kernel<false, true, I> : sweep_kernel<false, false, I>;
  const auto sweep = vector ? sweep_kernel<true, true, I> : sweep_kernel<true, false, I>;
  const unsigned sweep_grid =
      std::min(sweep_blocks(count, first_sweep), sweep_blocks(count, sweep));
  const unsigned direction_grid = grid_for(d, kDirectionRows);
  const unsigned project_grid = grid_for(n, kProjectRows);
  const dim3 update_grid(grid_for(d, kUpdateThreads),
                         static_cast<unsigned>(std::clamp<int64_t>(d, 1, kMaxGridY)));

  first_sweep<<<sweep_grid, kSweepThreads, 0, stream>>>(p, count, ws.weights, ws.quadforms,
                                                        ws.projection, state);
  check_launch("greedy sweep kernel launch");
  for (int64_t t = 0; t < k; ++t) {
    direction_kernel<T, I><<<direction_grid, kDirectionThreads, 0, stream>>>(
        f, d, p, ws.weights, ws.quadforms, ws.inverse, ws.direction, ws.difference, state, t,
        chosen, gains);
    check_launch("greedy direction kernel launch");
    if (t + 1 == k) break;
    if (n > 0) {
      project_kernel<T>
          <<<project_grid, kProjectRows, 0, stream>>>(f, n, d, ws.direction, ws.projection);
      check_launch("greedy projection kernel launch");
    }
    if (d > 0) {
      update_kernel<<<update_grid, kUpdateThreads, 0, stream>>>(ws.inverse, ws.direction, d, state);
      check_launch("greedy inverse update kernel launch");
    }
    sweep<<<sweep_grid, kSweepThreads, 0, stream>>>(p, count, ws.weights, ws.quadforms,
                                                    ws.projection, state);
    check_launch("greedy sweep kernel launch");
  }
}

}  // namespace

void CudaKernels::greedy_logdet(FeatureView features, PairView pairs, GreedyWorkspace workspace,
                                int64_t k, int64_t* chosen, double* gains, void* stream) {
  if (k <= 0) return;
  if (workspace.scratch == nullptr || !cuda::aligned_to(workspace.scratch, alignof(GreedyState))) {
    throw std::invalid_argument(
        "greedy_logdet: scratch must be an 8-byte aligned device buffer of "
        "greedy_scratch_bytes(count) bytes");
  }
  dispatch_types(features.is_double, pairs.is_int64, [&](auto t, auto idx) {
    run_greedy<decltype(t), decltype(idx)>(features, pairs, workspace, k, chosen, gains,
                                           cuda::as_stream(stream));
  });
}

int64_t CudaKernels::greedy_scratch_bytes(int64_t) { return sizeof(GreedyState); }

}  // namespace activerm
