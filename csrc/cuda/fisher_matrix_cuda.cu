// fisher_matrix on the GPU, both halves.
//  * The scatter, L_w Phi over pairs: row i gains w_k d_k, row j loses it. One warp per pair
//    with lanes across the columns, so the atomic adds of a warp hit consecutive addresses;
//    double atomicAdd is native from sm_60. The order of the additions is not fixed, so the last
//    bits can differ from the CPU's and between runs.
//  * The product Phi_c^T (L_w Phi) (fisher_loop.h): one thread per entry, summing the compared
//    rows in ascending order as the CPU does, and an entry below the diagonal as the one above
//    it (the CPU sums the upper triangle only), so given the same L both backends agree bit for
//    bit and the product itself is the same in every run.
#include "activerm/cuda_kernels.h"
#include "activerm/fisher_loop.h"
#include "cuda_common.cuh"

namespace activerm {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// The warps of a grid share rows of L_w Phi.
struct AtomicAdd {
  __device__ void operator()(double* at, double value) const { atomicAdd(at, value); }
};

template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    fisher_matrix_kernel(const T* __restrict__ features, int64_t d,
                              const I* __restrict__ pairs, int64_t count,
                              const double* __restrict__ weights, double* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; k < count;
       k += warps) {
    scatter_pair(features, d, pairs, weights, k, lane, d, 32, out, AtomicAdd{});
  }
}

// workspace slot n + r (as int64) = whether row r of L is compared.
__global__ void __launch_bounds__(kThreads)
    compared_rows_kernel(const double* __restrict__ laplacian, int64_t n, int64_t d,
                         int64_t* __restrict__ flags) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; r < n;
       r += stride) {
    flags[r] = compared_row(laplacian, d, r) ? 1 : 0;
  }
}

// mean[a] of the compared rows, each column summed in ascending row order (as the CPU).
template <class T>
__global__ void __launch_bounds__(kThreads)
    compared_mean_kernel(const T* __restrict__ features, int64_t n, int64_t d,
                         const int64_t* __restrict__ flags, double* __restrict__ mean) {
  const int64_t a = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (a >= d) return;
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (flags[r] == 0) continue;
    sum += static_cast<double>(features[r * d + a]);
    ++count;
  }
  mean[a] = count == 0 ? 0.0 : sum / static_cast<double>(count);
}

// Entry (a, c) = sum over the compared rows r, ascending, of product_term for entry
// (min(a, c), max(a, c)), which makes the result symmetric bit for bit (grid x: columns c, so
// a warp reads consecutive entries of a row of L, or of the features below the diagonal;
// grid y: rows a).
template <class T>
__global__ void __launch_bounds__(kThreads)
    product_kernel(const T* __restrict__ features, const double* __restrict__ laplacian,
                   int64_t n, int64_t d, const int64_t* __restrict__ flags,
                   const double* __restrict__ mean, double* __restrict__ out) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  for (int64_t a = blockIdx.y; a < d; a += gridDim.y) {
    if (c >= d) continue;
    const int64_t low = a < c ? a : c;
    const int64_t high = a < c ? c : a;
    double acc = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      if (flags[r] == 0) continue;
      acc += product_term(centred_feature(features, d, r, low, mean), laplacian, d, r, high);
    }
    out[a * d + c] = acc;
  }
}

constexpr int64_t kMaxGridY = 65535;

}  // namespace

void CudaKernels::fisher_product(FeatureView features, const double* laplacian, void* workspace,
                                 double* out, void* stream) {
  const cudaStream_t s = cuda::as_stream(stream);
  const int64_t n = features.n;
  const int64_t d = features.d;
  if (d == 0) return;
  double* mean = static_cast<double*>(workspace);
  int64_t* flags = reinterpret_cast<int64_t*>(mean + d);
  if (n > 0) {
    compared_rows_kernel<<<cuda::grid_for(n, kThreads), kThreads, 0, s>>>(laplacian, n, d, flags);
    cuda::check_launch("fisher_product compared rows kernel launch");
  }
  dispatch_feature_type(features.dtype, [&](auto t) {
    using T = decltype(t);
    const T* f = static_cast<const T*>(features.data);
    compared_mean_kernel<T><<<cuda::grid_for(d, kThreads), kThreads, 0, s>>>(f, n, d, flags, mean);
    cuda::check_launch("fisher_product mean kernel launch");
    const dim3 grid(cuda::grid_for(d, kThreads), static_cast<unsigned>(std::min(d, kMaxGridY)));
    product_kernel<T><<<grid, kThreads, 0, s>>>(f, laplacian, n, d, flags, mean, out);
    cuda::check_launch("fisher_product kernel launch");
  });
}

void CudaKernels::fisher_matrix(FeatureView features, PairView pairs, const double* weights,
                                double* out, void* stream) {
  const cudaStream_t s = cuda::as_stream(stream);
  const int64_t elements = features.n * features.d;
  if (elements == 0) return;
  cuda::check(cudaMemsetAsync(out, 0, elements * sizeof(double), s), "fisher_matrix memset");
  if (pairs.count == 0) return;
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    fisher_matrix_kernel<T, I>
        <<<cuda::grid_for(pairs.count, kWarpsPerBlock), kThreads, 0, s>>>(
            static_cast<const T*>(features.data), features.d, static_cast<const I*>(pairs.data),
            pairs.count, weights, out);
  });
  cuda::check_launch("fisher_matrix kernel launch");
}

}  // namespace activerm
