// fisher_matrix on the CPU, both halves; every sum has one fixed order, so the bits do not
// depend on the thread count.
//  * L_w Phi over pairs: row i gains w_k d_k, row j loses it, every element its pairs' terms in
//    pair order. Row by row where an index of each row's pairs (a counting sort of the pairs'
//    ends) is no larger than the result: threads own rows, each written once. Elsewhere as a
//    scatter: threads own disjoint column blocks and each sweeps all pairs in order, so there are
//    no write conflicts whatever the blocks: one block per thread. Both give the same bits.
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
#include <vector>

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

// Row r's incident pairs, in pair order: sides[offsets[r] .. offsets[r + 1]) hold 2k for pair k
// comparing r first and 2k + 1 for it comparing r second (both, first then second, for a pair
// of r with itself), by a counting sort over the pairs' ends. O(P + n).
template <class I>
void incident_pairs(const I* p, int64_t count, int64_t n, std::vector<int64_t>& offsets,
                    std::vector<int64_t>& sides) {
  offsets.assign(n + 1, 0);
  for (int64_t e = 0; e < 2 * count; ++e) ++offsets[p[e] + 1];
  for (int64_t r = 0; r < n; ++r) offsets[r + 1] += offsets[r];
  std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
  sides.resize(2 * count);
  for (int64_t e = 0; e < 2 * count; ++e) sides[next[p[e]]++] = e;
}

// Columns [first, d) of row r of L_w Phi summed row by row: each incident pair's
// laplacian_contribution added (r its first response) or its negation added (r its second) in
// pair order, as the scatter adds them.
template <class T, class I>
void gathered_row(const T* f, int64_t d, const I* p, const double* weights,
                  const int64_t* sides, int64_t begin, int64_t end, int64_t first,
                  double* __restrict__ y) {
  std::fill(y + first, y + d, 0.0);
  for (int64_t e = begin; e < end; ++e) {
    const int64_t k = sides[e] >> 1;
    const double w = weights ? weights[k] : 1.0;
    const T* fi = f + static_cast<int64_t>(p[2 * k]) * d;
    const T* fj = f + static_cast<int64_t>(p[2 * k + 1]) * d;
    if (sides[e] & 1) {
      for (int64_t a = first; a < d; ++a) y[a] += -laplacian_contribution(w, fi[a], fj[a]);
    } else {
      for (int64_t a = first; a < d; ++a) y[a] += laplacian_contribution(w, fi[a], fj[a]);
    }
  }
}

#ifdef ACTIVERM_WIDE_VECTORS
// gathered_row in AVX-512 vectors for float and double features: 32 columns at a time held in
// registers across the row's pairs, then 8, then gathered_row's one by one; lane by lane the
// same operations in the same order, so the same bits.
template <class T, class I>
ACTIVERM_WIDE void wide_gathered_row(const T* f, int64_t d, const I* p, const double* weights,
                                     const int64_t* sides, int64_t begin, int64_t end,
                                     double* y) {
  constexpr int64_t kBlock = 4;  // vectors of 8 columns held at once
  int64_t a = 0;
  while (d - a >= 8) {
    const int64_t vectors = std::min<int64_t>(kBlock, (d - a) / 8);
    __m512d acc[kBlock] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                           _mm512_setzero_pd()};
    for (int64_t e = begin; e < end; ++e) {
      const int64_t k = sides[e] >> 1;
      const __m512d w = _mm512_set1_pd(weights ? weights[k] : 1.0);
      const T* fi = f + static_cast<int64_t>(p[2 * k]) * d + a;
      const T* fj = f + static_cast<int64_t>(p[2 * k + 1]) * d + a;
      const bool second = sides[e] & 1;
#pragma GCC unroll 4
      for (int64_t v = 0; v < kBlock; ++v) {
        if (v >= vectors) break;
        const __m512d c =
            _mm512_mul_pd(w, _mm512_sub_pd(load_eight(fi + 8 * v), load_eight(fj + 8 * v)));
        acc[v] = second ? _mm512_sub_pd(acc[v], c) : _mm512_add_pd(acc[v], c);
      }
    }
    for (int64_t v = 0; v < vectors; ++v) _mm512_storeu_pd(y + a + 8 * v, acc[v]);
    a += 8 * vectors;
  }
  gathered_row(f, d, p, weights, sides, begin, end, a, y);
}
#endif

// The pair-order scatter: threads own column blocks, each sweeping every pair.
template <class T, class I>
void scattered_rows(const T* f, int64_t n, int64_t d, const I* p, int64_t count,
                    const double* weights, double* out) {
  // One sweep over the pairs per thread, each over its share of the columns: every further
  // sweep would read every pair's indices and weight again.
  const int64_t threads = omp_get_max_threads();
  const int64_t width = std::max<int64_t>(1, (d + threads - 1) / threads);
  const int64_t blocks = (d + width - 1) / width;
  std::fill(out, out + n * d, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * width;
    const int64_t end = std::min(d, begin + width);
    for (int64_t k = 0; k < count; ++k) {
      scatter_pair(f, d, p, weights, k, begin, end, 1, out, PlainAdd{});
    }
  }
}

}  // namespace

void CpuKernels::fisher_matrix(FeatureView features, PairView pairs, const double* weights,
                               double* out, void*) {
  dispatch_features(features.dtype, pairs.is_int64, [&](auto t, auto idx) {
    using T = decltype(t);
    using I = decltype(idx);
    const T* f = static_cast<const T*>(features.data);
    const I* p = static_cast<const I*>(pairs.data);
    const int64_t n = features.n;
    const int64_t d = features.d;
    // Where the index of every pair's ends takes no more memory than the result, each row is
    // summed by one thread from its own pairs: written once, in order, instead of gaining a
    // scattered read-modify-write of two whole rows per pair.
    if (2 * pairs.count > n * d) {
      scattered_rows(f, n, d, p, pairs.count, weights, out);
      return;
    }
    std::vector<int64_t> offsets;
    std::vector<int64_t> sides;
    incident_pairs(p, pairs.count, n, offsets, sides);
    [[maybe_unused]] const bool wide = wide_vectors();
#pragma omp parallel for schedule(dynamic, 64) if (2 * pairs.count * d >= kParallelWork)
    for (int64_t r = 0; r < n; ++r) {
#ifdef ACTIVERM_WIDE_VECTORS
      if constexpr (std::is_same<T, float>::value || std::is_same<T, double>::value) {
        if (wide) {
          wide_gathered_row(f, d, p, weights, sides.data(), offsets[r], offsets[r + 1],
                            out + r * d);
          continue;
        }
      }
#endif
      gathered_row(f, d, p, weights, sides.data(), offsets[r], offsets[r + 1], 0, out + r * d);
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
// Entries (first + t, c) for c from max(blocked, first + t) on, t < height, summed over the
// chunk's rows in order, entry by entry: the columns past a tile's last whole block (all of a
// last tile of fewer rows). centred(s, t) is the chunk's row s's centred feature first + t.
template <class Centred>
__attribute__((always_inline)) inline void product_tail(const double* laplacian, int64_t d,
                                                         const int64_t* rows, int64_t start,
                                                         int64_t count, int64_t first,
                                                         int64_t height, int64_t blocked,
                                                         const Centred& centred, double* out) {
  for (int64_t t = 0; t < height; ++t) {
    double* entry = out + (first + t) * d;
    for (int64_t s = 0; s < count; ++s) {
      const int64_t r = rows[start + s];
      for (int64_t c = std::max(blocked, first + t); c < d; ++c) {
        entry[c] += product_term(centred(s, t), laplacian, d, r, c);
      }
    }
  }
}

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
  product_tail(laplacian, d, rows, start, count, first, height, blocked,
               [&](int64_t s, int64_t t) { return centred[s][t][0]; }, out);
}

#ifdef ACTIVERM_WIDE_VECTORS
// The same tile in AVX-512 vectors, kWideRows x 16 entries a block. A whole tile is written in
// intrinsics, each block's 16 sums named registers from start to end of the chunk: written as
// product_block, GCC kept them in registers but stored every one to the stack after each row
// as well, a store for every multiply-add. A last tile of fewer rows is product_block's.
template <class T>
ACTIVERM_WIDE void wide_product_tile(const T* f, const double* laplacian, int64_t d,
                                     const double* mean, const int64_t* rows, int64_t start,
                                     int64_t stop, int64_t first, double* out) {
  constexpr int64_t kColumns = 16;
  if (d - first < kWideRows) {
    product_block<Double8, kWideRows, kColumns>(f, laplacian, d, mean, rows, start, stop, first,
                                                out);
    return;
  }
  const int64_t count = stop - start;
  double centred[kMaxChunkRows][kWideRows];
  for (int64_t s = 0; s < count; ++s) {
    for (int64_t t = 0; t < kWideRows; ++t) {
      centred[s][t] = centred_feature(f, d, rows[start + s], first + t, mean);
    }
  }
  const int64_t blocked = d / kColumns * kColumns;
  for (int64_t c0 = first / kColumns * kColumns; c0 < blocked; c0 += kColumns) {
    __m512d low[kWideRows];   // columns c0 .. c0 + 8 of the tile's rows
    __m512d high[kWideRows];  // and c0 + 8 .. c0 + 16
#pragma GCC unroll 8
    for (int64_t t = 0; t < kWideRows; ++t) {
      low[t] = _mm512_loadu_pd(out + (first + t) * d + c0);
      high[t] = _mm512_loadu_pd(out + (first + t) * d + c0 + 8);
    }
    for (int64_t s = 0; s < count; ++s) {
      const double* row = laplacian + rows[start + s] * d + c0;
      const __m512d left = _mm512_loadu_pd(row);
      const __m512d right = _mm512_loadu_pd(row + 8);
#pragma GCC unroll 8
      for (int64_t t = 0; t < kWideRows; ++t) {
        const __m512d value = _mm512_set1_pd(centred[s][t]);
        low[t] = _mm512_add_pd(low[t], _mm512_mul_pd(value, left));
        high[t] = _mm512_add_pd(high[t], _mm512_mul_pd(value, right));
      }
    }
#pragma GCC unroll 8
    for (int64_t t = 0; t < kWideRows; ++t) {
      _mm512_storeu_pd(out + (first + t) * d + c0, low[t]);
      _mm512_storeu_pd(out + (first + t) * d + c0 + 8, high[t]);
    }
  }
  product_tail(laplacian, d, rows, start, count, first, kWideRows, blocked,
               [&](int64_t s, int64_t t) { return centred[s][t]; }, out);
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
