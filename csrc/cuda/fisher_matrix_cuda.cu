// L_w Phi by a scatter over pairs: row i gains w_k d_k, row j loses it. One warp per pair with
// lanes across the columns, so the atomic adds of a warp hit consecutive addresses; double
// atomicAdd is native from sm_60. The order of the additions is not fixed, so the last bits
// can differ from the CPU's and between runs.
#include "activerm/cuda_kernels.h"
#include "activerm/pair_math.h"
#include "cuda_common.cuh"

namespace activerm {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    fisher_matrix_kernel(const T* __restrict__ features, int64_t d,
                              const I* __restrict__ pairs, int64_t count,
                              const double* __restrict__ weights, double* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; k < count;
       k += warps) {
    const int64_t i = pairs[2 * k];
    const int64_t j = pairs[2 * k + 1];
    const double w = weights ? weights[k] : 1.0;
    const T* fi = features + i * d;
    const T* fj = features + j * d;
    double* yi = out + i * d;
    double* yj = out + j * d;
    for (int64_t a = lane; a < d; a += 32) {
      const double contribution = laplacian_contribution(w, fi[a], fj[a]);
      atomicAdd(yi + a, contribution);
      atomicAdd(yj + a, -contribution);
    }
  }
}

}  // namespace

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
