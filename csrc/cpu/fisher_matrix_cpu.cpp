// fisher_matrix on the CPU, both halves; every sum has one fixed order, so the bits do not
// depend on the thread count.
//  * The scatter, L_w Phi over pairs: row i gains w_k d_k, row j loses it. Threads own disjoint
//    column blocks and each sweeps all pairs in order, so there are no write conflicts, and every
//    element gains its pairs' terms in pair order whatever the blocks: one block per thread.
//  * The product Phi_c^T (L_w Phi) over the compared rows (fisher_loop.h): threads own tiles of
//    output rows, and every entry sums the rows in ascending order, a chunk of rows at a time
//    so the chunk's rows of L stay in cache while a thread's tiles read them. Within a tile a
//    block of kProductRows x kProductColumns entries is held in registers across the chunk's
//    rows (16 independent chains of additions), each entry still summed in row order. Only the
//    blocks that reach the diagonal or above are summed (the product is symmetric in exact
//    arithmetic): entry (c, a) below it is then set to entry (a, c), so the result is
//    symmetric bit for bit, at about half the multiply-adds.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "activerm/cpu_kernels.h"
#include "activerm/fisher_loop.h"
#include "activerm/wide_vectors.h"

namespace activerm {

namespace {
constexpr int64_t kColumnBlock = 32;
constexpr int64_t kProductRows = 4;           // output rows per tile of the product
constexpr int64_t kProductColumns = 4;        // output columns per block held in registers
                                              // (an even number: pairs of lanes; 16 in the
                                              // AVX-512 form)
constexpr int64_t kWideRows = 8;              // output rows per tile in AVX-512 vectors
constexpr int64_t kChunkBytes = int64_t{1} << 17;  // rows of L per chunk: about this many bytes
constexpr int64_t kMaxChunkRows = 256;        // and at most this many rows
constexpr int64_t kParallelWork = 1 << 16;   // multiply-adds below which one thread runs

// A thread owns the elements it adds to.
struct PlainAdd {
  void operator()(double* at, double value) const { *at += value; }
};
}  // namespace

void CpuKernels::fisher_matrix(FeatureView features, PairView pairs, const double* weights,
                               double* out, void*) {
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    const T* f = static_cast<const T*>(features.data);
    const I* p = static_cast<const I*>(pairs.data);
    const int64_t d = features.d;
    // One sweep over the pairs per thread, each over its share of the columns: every further
    // sweep would read every pair's indices and weight again.
    const int64_t threads = omp_get_max_threads();
    const int64_t width = std::max<int64_t>(1, (d + threads - 1) / threads);
    const int64_t blocks = (d + width - 1) / width;
    std::fill(out, out + features.n * d, 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * width;
      const int64_t end = std::min(d, begin + width);
      for (int64_t k = 0; k < pairs.count; ++k) {
        scatter_pair(f, d, p, weights, k, begin, end, 1, out, PlainAdd{});
      }
    }
  });
}

namespace {

// Two doubles side by side (GCC/Clang vector extension: SSE2 on x86-64, NEON on aarch64), and
// eight in the AVX-512 form (wide_vectors.h): either width gives the same bits.
using Double2 = double __attribute__((vector_size(16)));
#ifdef ACTIVERM_WIDE_VECTORS
using Double8 = double __attribute__((vector_size(64)));
#endif

// The chunk's rows rows[start..stop) added to output rows [first, first + Rows) of the
// product from the block holding column ``first`` on (the upper triangle and the diagonal
// blocks), in blocks of Columns columns held in registers as vectors V: the tile's centred
// features of the chunk are formed once (each broadcast to a whole vector, so a block
// multiplies without shuffles), then each block is summed over the chunk's rows in order:
// every entry gains product_term's centred * L[r][c], row after row (written as vectors: plain
// loops compiled to spilled scalar code for 4 x 4 blocks, at a third of the speed).
template <class V, int64_t Rows, int64_t Columns, class T>
__attribute__((always_inline)) inline void product_block(const T* f, const double* laplacian,
                                                          int64_t d, const double* mean,
                                                          const int64_t* rows, int64_t start,
                                                          int64_t stop, int64_t first,
                                                          double* out) {
  constexpr int64_t lanes = sizeof(V) / sizeof(double);
  constexpr int64_t vectors = Columns / lanes;
  static_assert(Columns % lanes == 0, "a block is whole vectors");
  const int64_t height = std::min(Rows, d - first);
  const int64_t count = stop - start;
  V centred[kMaxChunkRows][Rows];
  for (int64_t s = 0; s < count; ++s) {
    for (int64_t t = 0; t < height; ++t) {
      const double value = centred_feature(f, d, rows[start + s], first + t, mean);
      centred[s][t] = V{} + value;
    }
  }
  const int64_t blocked = height == Rows ? d / Columns * Columns : 0;
  for (int64_t c0 = first / Columns * Columns; c0 < blocked; c0 += Columns) {
    V acc[Rows][vectors];
    for (int64_t t = 0; t < Rows; ++t) {
      std::memcpy(acc[t], out + (first + t) * d + c0, sizeof acc[t]);
    }
    for (int64_t s = 0; s < count; ++s) {
      V row[vectors];  // L[r][c0..c0 + Columns), unaligned in L
      std::memcpy(row, laplacian + rows[start + s] * d + c0, sizeof row);
      for (int64_t t = 0; t < Rows; ++t) {
        for (int64_t u = 0; u < vectors; ++u) acc[t][u] += centred[s][t] * row[u];
      }
    }
    for (int64_t t = 0; t < Rows; ++t) {
      std::memcpy(out + (first + t) * d + c0, acc[t], sizeof acc[t]);
    }
  }
  // the columns past the last whole block (and a last tile of fewer rows), entry by entry
  for (int64_t t = 0; t < height; ++t) {
    double* entry = out + (first + t) * d;
    for (int64_t s = 0; s < count; ++s) {
      const int64_t r = rows[start + s];
      for (int64_t c = std::max(blocked, first + t); c < d; ++c) {
        entry[c] += product_term(centred[s][t][0], laplacian, d, r, c);
      }
    }
  }
}

#ifdef ACTIVERM_WIDE_VECTORS
// The same tile in AVX-512 vectors, kWideRows x 16 entries a block.
template <class T>
ACTIVERM_WIDE void wide_product_tile(const T* f, const double* laplacian, int64_t d,
                                     const double* mean, const int64_t* rows, int64_t start,
                                     int64_t stop, int64_t first, double* out) {
  product_block<Double8, kWideRows, 16>(f, laplacian, d, mean, rows, start, stop, first, out);
}
#endif

}  // namespace

void CpuKernels::fisher_product(FeatureView features, const double* laplacian, void* workspace,
                                double* out, void*) {
  const int64_t n = features.n;
  const int64_t d = features.d;
  double* mean = static_cast<double*>(workspace);
  int64_t* rows = reinterpret_cast<int64_t*>(mean + d);
  int64_t compared = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (compared_row(laplacian, d, r)) rows[compared++] = r;
  }
  std::fill(out, out + d * d, 0.0);
  std::fill(mean, mean + d, 0.0);
  if (compared == 0) return;
  dispatch_feature_type(features.dtype, [&](auto t) {
    using T = decltype(t);
    const T* f = static_cast<const T*>(features.data);
    // the compared rows' mean: threads own column blocks, each column sums rows in order
    const int64_t blocks = (d + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (compared * d >= kParallelWork)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * kColumnBlock;
      const int64_t end = std::min(d, begin + kColumnBlock);
      for (int64_t s = 0; s < compared; ++s) {
        for (int64_t a = begin; a < end; ++a) mean[a] += static_cast<double>(f[rows[s] * d + a]);
      }
      for (int64_t a = begin; a < end; ++a) mean[a] /= static_cast<double>(compared);
    }
    [[maybe_unused]] const bool wide = wide_vectors();
    const int64_t height = wide ? kWideRows : kProductRows;
    const int64_t tiles = (d + height - 1) / height;
    const int64_t chunk = std::clamp<int64_t>(kChunkBytes / (8 * d), 1, kMaxChunkRows);
#pragma omp parallel if (compared * d * d >= kParallelWork)
    for (int64_t start = 0; start < compared; start += chunk) {
      const int64_t stop = std::min(compared, start + chunk);
      // schedule(static, 1) over the same tiles gives every thread the same tiles in every
      // chunk, so no two threads ever write one entry and nowait needs no barrier; dealt one
      // at a time, since a tile nearer the top holds more blocks of the upper triangle
#pragma omp for schedule(static, 1) nowait
      for (int64_t tile = 0; tile < tiles; ++tile) {
#ifdef ACTIVERM_WIDE_VECTORS
        if (wide) {
          wide_product_tile(f, laplacian, d, mean, rows, start, stop, tile * height, out);
          continue;
        }
#endif
        product_block<Double2, kProductRows, kProductColumns>(f, laplacian, d, mean, rows, start,
                                                              stop, tile * kProductRows, out);
      }
    }
  });
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t c = a + 1; c < d; ++c) out[c * d + a] = out[a * d + c];
  }
}

}  // namespace activerm
