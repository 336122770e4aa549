// project_features on the CPU (feature_projection_cpu.h). Threads own tiles of kTileRows rows;
// a tile's rows are widened to double once, then every block of kBlockColumns columns of the
// tile is summed in registers (kTileRows x 2 vectors: 16 independent chains of additions) over
// the block's range of M's rows, in ascending order.
#include "feature_projection_cpu.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "activerm/feature_types.h"
#include "activerm/wide_vectors.h"
#include "one_shot_work_cpu.h"

namespace activerm {

namespace {

constexpr int64_t kTileRows = 8;
constexpr int64_t kBlockColumns = 16;  // two vectors of eight
// Tiles handed out at a time (dynamic schedule: a thread the OS preempts does not hold the
// call up, the others take its tiles; results do not depend on who takes which).
constexpr int64_t kTileChunk = 8;

#ifdef ACTIVERM_WIDE_VECTORS
// The rows of M block b's columns need: [first, last) holds every nonzero entry of columns
// [b kBlockColumns, (b + 1) kBlockColumns), an empty range for a block of zeros.
struct RowRange {
  int64_t first;
  int64_t last;
};

std::vector<RowRange> nonzero_rows(const double* matrix, int64_t d, int64_t m) {
  const int64_t blocks = (m + kBlockColumns - 1) / kBlockColumns;
  std::vector<RowRange> ranges(blocks, RowRange{d, 0});
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t c = 0; c < m; ++c) {
      if (matrix[a * m + c] == 0.0) continue;
      RowRange& range = ranges[c / kBlockColumns];
      range.first = std::min(range.first, a);
      range.last = a + 1;
    }
  }
  return ranges;
}

// Rows [r0, r0 + height) of the output, from the tile's widened rows x (kTileRows x d, rows
// past height zero).
ACTIVERM_WIDE void project_tile(const double* x, int64_t d, const double* matrix, int64_t m,
                                const std::vector<RowRange>& ranges, int64_t height,
                                double* out) {
  for (int64_t b = 0; b < static_cast<int64_t>(ranges.size()); ++b) {
    const int64_t c0 = b * kBlockColumns;
    const int64_t width = std::min(kBlockColumns, m - c0);
    // lanes past the last column are neither read nor written
    const __mmask8 low_lanes = static_cast<__mmask8>(width >= 8 ? 0xff : (1u << width) - 1);
    const __mmask8 high_lanes =
        static_cast<__mmask8>(width >= 16 ? 0xff : width <= 8 ? 0 : (1u << (width - 8)) - 1);
    __m512d low[kTileRows];
    __m512d high[kTileRows];
#pragma GCC unroll 8
    for (int64_t s = 0; s < kTileRows; ++s) {
      low[s] = _mm512_setzero_pd();
      high[s] = _mm512_setzero_pd();
    }
    for (int64_t a = ranges[b].first; a < ranges[b].last; ++a) {
      const double* row = matrix + a * m + c0;
      const __m512d left = _mm512_maskz_loadu_pd(low_lanes, row);
      const __m512d right = _mm512_maskz_loadu_pd(high_lanes, row + 8);
#pragma GCC unroll 8
      for (int64_t s = 0; s < kTileRows; ++s) {
        const __m512d value = _mm512_set1_pd(x[s * d + a]);
        low[s] = _mm512_add_pd(low[s], _mm512_mul_pd(value, left));
        high[s] = _mm512_add_pd(high[s], _mm512_mul_pd(value, right));
      }
    }
    // unrolled with a test per row, not a loop to `height`: GCC then keeps the sums in
    // registers instead of storing each to the stack after every row of M
#pragma GCC unroll 8
    for (int64_t s = 0; s < kTileRows; ++s) {
      if (s >= height) break;
      _mm512_mask_storeu_pd(out + s * m + c0, low_lanes, low[s]);
      _mm512_mask_storeu_pd(out + s * m + c0 + 8, high_lanes, high[s]);
    }
  }
}
#endif

}  // namespace

void project_features_cpu([[maybe_unused]] FeatureView features,
                          [[maybe_unused]] const double* matrix, [[maybe_unused]] int64_t m,
                          [[maybe_unused]] double* out) {
  // AVX-512 instructions on a CPU without them would end the process
  if (!wide_vectors()) {
    throw std::logic_error("project_features needs AVX-512 (wide_vectors)");
  }
#ifdef ACTIVERM_WIDE_VECTORS
  const int64_t n = features.n;
  const int64_t d = features.d;
  const std::vector<RowRange> ranges = nonzero_rows(matrix, d, m);
  const int64_t tiles = (n + kTileRows - 1) / kTileRows;
  const int64_t chunks = (tiles + kTileChunk - 1) / kTileChunk;
  dispatch_feature_type(features.dtype, [&](auto t) {
    using T = decltype(t);
    const T* f = static_cast<const T*>(features.data);
#pragma omp parallel if (chunks > 1 && n * d * m >= kOneShotParallelWork)
    {
      std::vector<double> x(kTileRows * d);  // the tile's rows, widened and scaled (exact)
#pragma omp for schedule(dynamic, 1)
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        for (int64_t tile = chunk * kTileChunk; tile < std::min(tiles, (chunk + 1) * kTileChunk);
             ++tile) {
          const int64_t r0 = tile * kTileRows;
          const int64_t height = std::min(kTileRows, n - r0);
          for (int64_t s = 0; s < kTileRows; ++s) {
            for (int64_t a = 0; a < d; ++a) {
              x[s * d + a] =
                  s < height ? static_cast<double>(f[(r0 + s) * d + a]) * features.scale : 0.0;
            }
          }
          project_tile(x.data(), d, matrix, m, ranges, height, out + r0 * m);
        }
      }
    }
  });
#endif
}

}  // namespace activerm
