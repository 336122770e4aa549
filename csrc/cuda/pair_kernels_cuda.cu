// Per-pair kernels on the GPU. The per-element arithmetic is that of pair_math.h and the CPU
// kernels, term for term and in the same order, so both backends produce the same bits
// (fisher_weights up to the last ulp of the device exp).
#include <algorithm>

#include "activerm/cuda_kernels.h"
#include "activerm/pair_math.h"
#include "activerm/pair_source.h"
#include "cuda_common.cuh"

namespace activerm {

namespace {

using cuda::as_stream;
using cuda::check_launch;
using cuda::grid_for;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// One warp per pair, lanes across the columns, so row reads and writes are coalesced.
template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    pair_diff_kernel(const T* __restrict__ features, int64_t d, const I* __restrict__ pairs,
                     int64_t count, StoredDifference<T>* __restrict__ out) {
  using D = StoredDifference<T>;
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; k < count;
       k += warps) {
    const T* fi = features + static_cast<int64_t>(pairs[2 * k]) * d;
    const T* fj = features + static_cast<int64_t>(pairs[2 * k + 1]) * d;
    D* row = out + k * d;
    for (int64_t a = lane; a < d; a += 32) row[a] = static_cast<D>(fi[a]) - static_cast<D>(fj[a]);
  }
}

template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    fisher_weights_kernel(const T* __restrict__ rewards, int64_t members, int64_t n,
                          const I* __restrict__ pairs, int64_t count, double* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; k < count;
       k += stride) {
    out[k] = mean_fisher_weight(rewards, members, n, static_cast<int64_t>(pairs[2 * k]),
                                static_cast<int64_t>(pairs[2 * k + 1]));
  }
}

__global__ void __launch_bounds__(kThreads)
    implicit_pairs_kernel(GeneratedPairs pairs, int64_t count, int64_t* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; k < count;
       k += stride) {
    pairs(k, out[2 * k], out[2 * k + 1]);
  }
}

// pair_quadform keeps the CPU's order of summation (column 0 to d - 1, one accumulator per pair)
// and still reads rows coalesced: a block stages the terms of kQuadPairs pairs x kQuadCols
// columns in shared memory (warps read 32 consecutive columns of one row), then thread p adds
// up row p of the tile in order.
constexpr int kQuadPairs = 128;
constexpr int kQuadCols = 32;
constexpr int kSlotStride = kQuadPairs / kQuadCols;
constexpr int kSlotsPerThread = kQuadPairs / kSlotStride;
constexpr int kQuadBatch = 8;
static_assert(kQuadPairs % kQuadCols == 0, "a thread keeps one tile column");
static_assert(kSlotsPerThread % kQuadBatch == 0, "whole batches");

// Handles columns [begin, end); with begin > 0 the running sum is resumed from out.
template <class T, class I, bool kProjected>
__global__ void __launch_bounds__(kQuadPairs)
    pair_quadform_kernel(const T* __restrict__ features, int64_t d, const I* __restrict__ pairs,
                         int64_t count, const double* __restrict__ projected, double scale,
                         double feature_scale, int64_t begin, int64_t end,
                         double* __restrict__ out) {
  __shared__ double terms[kQuadPairs][kQuadCols + 1];  // +1: conflict-free row-wise reads
  __shared__ int64_t first_row[kQuadPairs];
  __shared__ int64_t second_row[kQuadPairs];
  const int column = threadIdx.x % kQuadCols;      // tile column this thread loads
  const int first_slot = threadIdx.x / kQuadCols;  // and pairs first_slot + m kSlotStride
  for (int64_t block_first = static_cast<int64_t>(blockIdx.x) * kQuadPairs; block_first < count;
       block_first += static_cast<int64_t>(gridDim.x) * kQuadPairs) {
    const int64_t k = block_first + threadIdx.x;
    const int active_pairs = static_cast<int>(std::min<int64_t>(kQuadPairs, count - block_first));
    const bool active = static_cast<int>(threadIdx.x) < active_pairs;
    double acc = 0.0;
    if (active) {  // pairs and out stream past once per launch: evict-first, keep Phi in L2
      first_row[threadIdx.x] = static_cast<int64_t>(__ldcs(pairs + 2 * k)) * d;
      second_row[threadIdx.x] = static_cast<int64_t>(__ldcs(pairs + 2 * k + 1)) * d;
      if (begin > 0) acc = __ldcs(out + k);
    }
    __syncthreads();
    for (int64_t a0 = begin; a0 < end; a0 += kQuadCols) {
      const int width = static_cast<int>(std::min<int64_t>(kQuadCols, end - a0));
      if (column < width) {
        // Loads of kQuadBatch pairs first (registers), then their terms, so that many gathers
        // are in flight per thread.
        const int64_t a = a0 + column;
#pragma unroll
        for (int batch = 0; batch < kSlotsPerThread; batch += kQuadBatch) {
          T fi[kQuadBatch];
          T fj[kQuadBatch];
          double gi[kQuadBatch];
          double gj[kQuadBatch];
#pragma unroll
          for (int b = 0; b < kQuadBatch; ++b) {
            // Slots past the end reload the last pair: unpredicated loads are scheduled together.
            const int slot = min(first_slot + (batch + b) * kSlotStride, active_pairs - 1);
            const int64_t i = first_row[slot] + a;
            const int64_t j = second_row[slot] + a;
            fi[b] = load_feature(features + i);
            fj[b] = load_feature(features + j);
            gi[b] = kProjected ? __ldg(projected + i) : 0.0;
            gj[b] = kProjected ? __ldg(projected + j) : 0.0;
          }
#pragma unroll
          for (int b = 0; b < kQuadBatch; ++b) {
            const int slot = first_slot + (batch + b) * kSlotStride;
            if (slot < active_pairs) {
              const double diff = scaled_difference(fi[b], fj[b], feature_scale);
              terms[slot][column] = kProjected ? diff * (gi[b] - gj[b]) : diff * diff;
            }
          }
        }
      }
      __syncthreads();
      if (active) {
        for (int c = 0; c < width; ++c) acc += terms[threadIdx.x][c];
      }
      __syncthreads();
    }
    if (active) __stcs(out + k, (end == d && !kProjected) ? acc * scale : acc);
  }
}

// Columns per pair_quadform launch. Every block of a launch gathers rows of the same column
// range, so when that slice of Phi (and G) fits in half the L2 the random row gathers of
// neighbouring blocks hit L2 instead of DRAM. The sum carried between launches in `out` is a
// double, so splitting changes no bit of the result.
int64_t quadform_columns_per_launch(int64_t n, int64_t d, int64_t bytes_per_column) {
  const int64_t l2 = cuda::current_device_attribute(cudaDevAttrL2CacheSize, "L2 size query");
  const int64_t fit = (l2 / 2) / std::max<int64_t>(1, n * bytes_per_column);
  return std::min(d, std::max<int64_t>(kQuadCols, fit / kQuadCols * kQuadCols));
}

}  // namespace

void CudaKernels::pair_diff(FeatureView features, PairView pairs, void* out, void* stream) {
  if (pairs.count == 0 || features.d == 0) return;
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    pair_diff_kernel<T, I>
        <<<grid_for(pairs.count, kWarpsPerBlock), kThreads, 0, as_stream(stream)>>>(
            static_cast<const T*>(features.data), features.d, static_cast<const I*>(pairs.data),
            pairs.count, static_cast<StoredDifference<T>*>(out));
  });
  check_launch("pair_diff kernel launch");
}

void CudaKernels::fisher_weights(const void* rewards, bool rewards_double, int64_t members,
                                 int64_t n, PairView pairs, double* out, void* stream) {
  if (pairs.count == 0) return;
  dispatch_types(rewards_double, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    fisher_weights_kernel<T, I>
        <<<grid_for(pairs.count, kThreads), kThreads, 0, as_stream(stream)>>>(
            static_cast<const T*>(rewards), members, n, static_cast<const I*>(pairs.data),
            pairs.count, out);
  });
  check_launch("fisher_weights kernel launch");
}

void CudaKernels::pair_quadform(FeatureView features, PairView pairs, const double* projected,
                                double scale, double* out, void* stream) {
  if (pairs.count == 0) return;
  const cudaStream_t s = as_stream(stream);
  if (features.d == 0) {  // empty sums: 0 (all-zero bits) for every pair
    cuda::check(cudaMemsetAsync(out, 0, pairs.count * sizeof(double), s), "pair_quadform memset");
    return;
  }
  const int64_t width = quadform_columns_per_launch(
      features.n, features.d, feature_bytes(features.dtype) + (projected ? sizeof(double) : 0));
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    const auto kernel =
        projected ? pair_quadform_kernel<T, I, true> : pair_quadform_kernel<T, I, false>;
    for (int64_t begin = 0; begin < features.d; begin += width) {
      kernel<<<grid_for(pairs.count, kQuadPairs), kQuadPairs, 0, s>>>(
          static_cast<const T*>(features.data), features.d, static_cast<const I*>(pairs.data),
          pairs.count, projected, scale, features.scale, begin,
          std::min(features.d, begin + width), out);
      check_launch("pair_quadform kernel launch");
    }
  });
}

void CudaKernels::implicit_pairs(PairView pairs, int64_t* out, void* stream) {
  if (pairs.count == 0) return;
  implicit_pairs_kernel<<<grid_for(pairs.count, kThreads), kThreads, 0, as_stream(stream)>>>(
      GeneratedPairs{pairs.implicit}, pairs.count, out);
  check_launch("implicit_pairs kernel launch");
}

}  // namespace activerm
