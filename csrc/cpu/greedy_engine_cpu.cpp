// The greedy log-det engine on the CPU: sweep, apply and the loop that composes them (see
// kernel_interface.h). A step costs one O(P E) sweep that downdates every score and finds the
// next argmax in the same pass over memory, plus O(E d^2) for the factors and O(E n d) for
// v = Phi u. Every sum runs in a fixed order, so results do not depend on the thread count and
// match the CUDA engine bit for bit.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "activerm/cpu_kernels.h"
#include "activerm/greedy_loop.h"
#include "activerm/greedy_workspace.h"
#include "activerm/pair_math.h"
#include "activerm/pair_source.h"
#include "activerm/wide_vectors.h"
#include "team_tuner_cpu.h"

namespace activerm {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kParallelDim = 512;
// Multiply-adds below which a row product runs on one thread: a parallel region costs more.
constexpr int64_t kParallelWork = 1 << 18;
// Work is handed out in chunks (dynamic schedule), so a thread the OS preempts does not hold
// the whole step up at the barrier: the other threads take its share. Results do not depend
// on who takes which chunk.
constexpr int64_t kSweepChunk = 1 << 15;
constexpr int64_t kRowBlockChunk = 64;

struct Best {
  double score;
  int64_t index;
};

// The start of the workspace's extra bytes: what the engine chose at its first sweep or apply
// with these features (zero before the first sweep: greedy_zeroed_bytes covers it).
struct EngineHeader {
  const void* features;  // the features it was set up for (anything else: not yet)
  bool wide;             // sweeps and panel products run their AVX-512 forms (wide_vectors.h)
  bool panels_built;     // member_panels has copied the features
};
constexpr int64_t kHeaderBytes = 64;

EngineHeader& engine_header(const GreedyProblem& problem, const GreedyBuffers& buffers) {
  auto& header = *static_cast<EngineHeader*>(buffers.extra);
  if (header.features != problem.features.data) {  // field by field: padding stays as it was
    header.features = problem.features.data;
    header.wide = wide_vectors();
    header.panels_built = false;
  }
  return header;
}

// The score of pair k = (i, j): with kDowndate, q_e,k -= c_e (v_e,i - v_e,j)^2 first (written
// back); `repeat` masks it instead (a generated pool may hold a pair twice: the downdate after a
// choice masks every copy of the chosen pair; a stored pool is validated unique). One member:
// w q; several: combined_score over the members in order; weight(e) is member e's w.
template <bool kDowndate, bool kSingle, class Weight>
double scored_pair(int64_t members, double* scores, const double* projection,
                   const double* downdate, int64_t k, int64_t i, int64_t j, bool repeat,
                   const Weight& weight) {
  const int64_t stride = kSingle ? 1 : members;
  double* q = scores + k * stride;
  double score = 0.0;
  for (int64_t e = 0; e < stride; ++e) {
    double value = q[e];
    if constexpr (kDowndate) {
      value = repeat ? kNaN
                     : downdated_quadform(value, downdate[e], projection[i * stride + e],
                                          projection[j * stride + e]);
      q[e] = value;
    }
    const double x = weight(e) * value;
    score = e == 0 ? x : combined_score(score, x);
  }
  return score;
}

// Pairs a sweep computes (generated, or whose weights it computes) are staged kStage at a time:
// their pairs first (prefetching what the later loops gather), then one member's weights, then
// the scores, so the long chains of arithmetic and the cache misses of neighbouring pairs
// overlap instead of each waiting on the last.
constexpr int64_t kStage = 64;

#ifdef ACTIVERM_WIDE_VECTORS
// Eight weights of one member from k on, as a vector.
ACTIVERM_WIDE inline __m512d weight_vector(const StoredWeights& weights, int64_t k) {
  return _mm512_loadu_pd(weights.data + k);  // one member: one weight a pair
}
ACTIVERM_WIDE inline __m512d weight_vector(const UnitWeights&, int64_t) {
  return _mm512_set1_pd(1.0);
}

// The first then the second responses of the eight stored pairs from k on.
ACTIVERM_WIDE inline void pair_vectors(const StoredPairs<int32_t>& pairs, int64_t k, __m512i& i,
                                       __m512i& j) {
  // 16 int32 i0 j0 i1 j1 ...: the even ones to the low half, the odd ones to the high half
  const __m512i sides = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15),
      _mm512_loadu_si512(pairs.data + 2 * k));
  i = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(sides));
  j = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(sides, 1));
}
ACTIVERM_WIDE inline void pair_vectors(const StoredPairs<int64_t>& pairs, int64_t k, __m512i& i,
                                       __m512i& j) {
  const __m512i low = _mm512_loadu_si512(pairs.data + 2 * k);
  const __m512i high = _mm512_loadu_si512(pairs.data + 2 * k + 8);
  i = _mm512_permutex2var_epi64(low, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), high);
  j = _mm512_permutex2var_epi64(low, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), high);
}

// The downdating sweep of one member over stored pairs [first, last), eight pairs a vector:
// lane by lane the scalar arithmetic of scored_pair (the same bits); each lane keeps its first
// best, the lanes are merged by beats and the last few pairs run the scalar loop, so the best
// is the scalar sweep's, ties to the lower index included.
template <class I, class Weights, class Scalar>
ACTIVERM_WIDE Best wide_downdate_sweep(const StoredPairs<I>& pairs, const Weights& weights,
                                       double* scores, const double* projection,
                                       double coefficient, int64_t first, int64_t last,
                                       const Scalar& scalar) {
  const __m512d c = _mm512_set1_pd(coefficient);
  __m512d best = _mm512_set1_pd(-std::numeric_limits<double>::infinity());
  __m512i best_index = _mm512_set1_epi64(-1);
  __m512i index =
      _mm512_add_epi64(_mm512_set1_epi64(first), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  int64_t k = first;
  for (; k + 8 <= last; k += 8) {
    __m512i i;
    __m512i j;
    pair_vectors(pairs, k, i, j);
    const __m512d v = _mm512_sub_pd(_mm512_i64gather_pd(i, projection, 8),
                                    _mm512_i64gather_pd(j, projection, 8));
    const __m512d value =
        _mm512_sub_pd(_mm512_loadu_pd(scores + k), _mm512_mul_pd(_mm512_mul_pd(c, v), v));
    _mm512_storeu_pd(scores + k, value);
    const __m512d x = _mm512_mul_pd(weight_vector(weights, k), value);
    const __mmask8 wins = _mm512_cmp_pd_mask(x, best, _CMP_GT_OQ);  // NaN never wins
    best = _mm512_mask_mov_pd(best, wins, x);
    best_index = _mm512_mask_mov_epi64(best_index, wins, index);
    index = _mm512_add_epi64(index, _mm512_set1_epi64(8));
  }
  alignas(64) double lane_score[8];
  alignas(64) int64_t lane_index[8];
  _mm512_store_pd(lane_score, best);
  _mm512_store_si512(lane_index, best_index);
  Best found = scalar(k, last);
  for (int lane = 0; lane < 8; ++lane) {
    if (beats(lane_score[lane], lane_index[lane], found.score, found.index)) {
      found = {lane_score[lane], lane_index[lane]};
    }
  }
  return found;
}
#endif

// Whether a sweep runs wide_downdate_sweep: a downdate of one member's stored weights (or none)
// over stored pairs, on a CPU with AVX-512 (EngineHeader::wide).
template <bool kDowndate, bool kSingle, class Pairs, class Weights>
constexpr bool kWideSweepForm = kDowndate && kSingle && !Pairs::kGenerated &&
                                (std::is_same_v<Weights, StoredWeights> ||
                                 std::is_same_v<Weights, UnitWeights>);

// The better of two candidates (beats: ties to the lower index, so any merge order agrees).
inline Best better(const Best& a, const Best& b) {
  return beats(b.score, b.index, a.score, a.index) ? b : a;
}

// One pass over the pairs; the best (score, local index), NaN never winning.
template <bool kDowndate, bool kSingle, class Pairs, class Weights>
Best sweep_pairs(const GreedyProblem& problem, GreedyState state, const GreedyBuffers& buffers,
                 const Pairs& pairs, const Weights& weights, [[maybe_unused]] bool wide) {
  constexpr bool kNeedPairs = kDowndate || Weights::kFromRewards;
  constexpr bool kStaged = Pairs::kGenerated || Weights::kFromRewards;
  const int64_t count = problem.pairs.count;
  const int64_t members = problem.members;
  const GreedyChoice last = *buffers.choice;
  // The best of stored pairs [first_pair, last_pair) whose weights need no pair, one by one.
  const auto scan_each = [&](int64_t first_pair, int64_t last_pair) {
    Best local{-std::numeric_limits<double>::infinity(), -1};
    for (int64_t k = first_pair; k < last_pair; ++k) {
      int64_t i = 0;
      int64_t j = 0;
      if constexpr (kDowndate) pairs(k, i, j);
      const double score = scored_pair<kDowndate, kSingle>(
          members, state.scores, buffers.projection, buffers.downdate, k, i, j, false,
          [&](int64_t e) { return weights(k, e, i, j); });
      if (beats(score, k, local.score, local.index)) local = {score, k};
    }
    return local;
  };
  // The best of pairs [first_pair, last_pair), in order; chunk bounds are multiples of kStage.
  const auto scan = [&](int64_t first_pair, int64_t last_pair) {
    Best local{-std::numeric_limits<double>::infinity(), -1};
    if constexpr (kStaged) {
      for (int64_t first = first_pair; first < last_pair; first += kStage) {
        const int64_t size = std::min(kStage, last_pair - first);
        int64_t i[kStage] = {};
        int64_t j[kStage] = {};
        double w[kStage] = {};
        if constexpr (kNeedPairs) {
          for (int64_t t = 0; t < size; ++t) {
            pairs(first + t, i[t], j[t]);
            // the gathers of the stage's later loops, requested while the pairs are drawn
            if constexpr (Weights::kFromRewards) {
              __builtin_prefetch(weights.fisher.rewards + i[t]);
              __builtin_prefetch(weights.fisher.rewards + j[t]);
            }
            if constexpr (kDowndate) {
              __builtin_prefetch(buffers.projection + i[t] * (kSingle ? 1 : members));
              __builtin_prefetch(buffers.projection + j[t] * (kSingle ? 1 : members));
            }
          }
        }
        for (int64_t t = 0; t < size; ++t) w[t] = weights(first + t, 0, i[t], j[t]);
        for (int64_t t = 0; t < size; ++t) {
          const int64_t k = first + t;
          bool repeat = false;
          if constexpr (kDowndate && Pairs::kGenerated) {
            repeat = i[t] == last.first && j[t] == last.second;
          }
          const double score = scored_pair<kDowndate, kSingle>(
              members, state.scores, buffers.projection, buffers.downdate, k, i[t], j[t], repeat,
              [&](int64_t e) { return e == 0 ? w[t] : weights(k, e, i[t], j[t]); });
          if (beats(score, k, local.score, local.index)) local = {score, k};
        }
      }
      return local;
    } else {
#ifdef ACTIVERM_WIDE_VECTORS
      if constexpr (kWideSweepForm<kDowndate, kSingle, Pairs, Weights>) {
        if (wide) {
          return wide_downdate_sweep(pairs, weights, state.scores, buffers.projection,
                                     buffers.downdate[0], first_pair, last_pair, scan_each);
        }
      }
#endif
      return scan_each(first_pair, last_pair);
    }
  };
  Best best{-std::numeric_limits<double>::infinity(), -1};
  // The pairs are handed out kSweepChunk at a time, so a pool of one chunk keeps one thread
  // busy whatever the team: it runs on the calling thread, without a team forked and joined
  // every step.
  const int64_t chunks = (count + kSweepChunk - 1) / kSweepChunk;
#pragma omp parallel if (chunks > 1)
  {
    Best local{-std::numeric_limits<double>::infinity(), -1};
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t c = 0; c < chunks; ++c) {
      local = better(local, scan(c * kSweepChunk, std::min(count, (c + 1) * kSweepChunk)));
    }
#pragma omp critical(activerm_sweep_best)
    best = better(best, local);
  }
  return best;
}

template <class Pairs, class Weights>
void sweep(const GreedyProblem& problem, GreedyState state, const GreedyBuffers& buffers,
           bool downdate, const Pairs& pairs, const Weights& weights) {
  // After a choice that is no pair there is nothing to downdate and nothing new to find.
  if (downdate && buffers.choice->index < 0) return;
  if (!downdate) buffers.reference[0] = 1.0;  // fresh scores: the next choice is the reference
  const bool single = problem.members == 1;
  const bool wide = engine_header(problem, buffers).wide;
  const Best best =
      downdate
          ? (single ? sweep_pairs<true, true>(problem, state, buffers, pairs, weights, wide)
                    : sweep_pairs<true, false>(problem, state, buffers, pairs, weights, wide))
          : (single ? sweep_pairs<false, true>(problem, state, buffers, pairs, weights, wide)
                    : sweep_pairs<false, false>(problem, state, buffers, pairs, weights, wide));
  GreedyChoice& choice = *buffers.choice;
  choice.score = best.score;
  choice.index = best.index < 0 ? -1 : problem.first_index + best.index;
  if (best.index < 0) return;
  pairs(best.index, choice.first, choice.second);
  for (int64_t e = 0; e < problem.members; ++e) {
    choice.weights[e] = weights(best.index, e, choice.first, choice.second);
  }
}

// out_r = sum_a M_ra x_a for rows r of a row-major (rows, cols) matrix, out_r at out[r * stride].
// Every row sums in order with one float64 accumulator (the rounding the CUDA kernel
// reproduces); kRows rows at a time give independent add chains, which hides the add latency a
// single chain per row would wait on.
template <class T>
void row_products(const T* matrix, int64_t rows, int64_t cols, const double* x, double* out,
                  int64_t stride) {
  constexpr int64_t kRows = 8;
  const int64_t blocks = (rows + kRows - 1) / kRows;
#pragma omp parallel for schedule(dynamic, kRowBlockChunk) if (rows * cols >= kParallelWork)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kRows;
    if (first + kRows <= rows) {
      const T* row = matrix + first * cols;
      double acc[kRows] = {};
      for (int64_t a = 0; a < cols; ++a) {
        const double xa = x[a];
        for (int64_t r = 0; r < kRows; ++r) acc[r] += static_cast<double>(row[r * cols + a]) * xa;
      }
      for (int64_t r = 0; r < kRows; ++r) out[(first + r) * stride] = acc[r];
    } else {
      for (int64_t r = first; r < rows; ++r) {
        const T* row = matrix + r * cols;
        double acc = 0.0;
        for (int64_t a = 0; a < cols; ++a) acc += static_cast<double>(row[a]) * x[a];
        out[r * stride] = acc;
      }
    }
  }
}

// Features copied once per engine into panels of kPanelRows rows, column by column:
// panel[(b d + a) kPanelRows + r] = Phi[b kPanelRows + r, a]. Then v = Phi u reads each column of
// a panel as kPanelRows contiguous values, which the compiler turns into packed multiplies and
// adds, while every row still sums in order with one float64 accumulator (the same bits as
// row_products). The copy lives in the workspace's extra bytes; it is made where the product is
// a large share of a step (n d at least the sweep's P E) and fits in kPanelMaxBytes.
// Half-precision features are widened to float in the panels (exactly: the same values), so
// the panel products run the float32 code, packed conversions included, at the same speed.
constexpr int64_t kPanelRows = 16;
constexpr int64_t kPanelBlockChunk = 32;
// Multiply-adds from which panel products run on the team, given two chunks or more to share
// (one chunk keeps one thread busy). The package's idle OpenMP threads sleep (_openmp.py), so a
// team costs a wake-up of its sleeping threads each step, which smaller products do not repay
// (bench/bench_greedy.py --small runs one below the bound). On a busy machine TeamTuner moves
// the steps to fewer threads.
constexpr int64_t kPanelParallelWork = int64_t{1} << 20;
constexpr int64_t kPanelMaxBytes = int64_t{64} << 20;

template <class T>
using PanelType = std::conditional_t<kHalfFeature<T>, float, T>;

// Bytes of one panel element for the features' dtype.
int64_t panel_element_bytes(int32_t dtype) {
  return dtype == kFeatureFloat64 ? 8 : 4;
}

int64_t panel_copies(const GreedyProblem& problem) {
  return problem.member_stride == 0 ? 1 : problem.members;
}

// Full panels per member (the last n mod kPanelRows rows are read in place); 0: no panels.
int64_t panel_blocks(const GreedyProblem& problem) {
  const int64_t n = problem.features.n;
  const int64_t d = problem.features.d;
  const int64_t blocks = n / kPanelRows;
  const int64_t element = panel_element_bytes(problem.features.dtype);
  if (blocks == 0 || d == 0 || n * d < problem.pairs.count * problem.members) return 0;
  if (panel_copies(problem) * blocks * kPanelRows * d * element > kPanelMaxBytes) return 0;
  return blocks;
}

// The workspace's extra bytes: the header, then the panels.
int64_t extra_bytes(const GreedyProblem& problem) {
  const int64_t element = panel_element_bytes(problem.features.dtype);
  return kHeaderBytes +
         panel_copies(problem) * panel_blocks(problem) * kPanelRows * problem.features.d * element;
}

// Member e's panels, built for every member at the first call with these features.
template <class T>
const PanelType<T>* member_panels(const GreedyProblem& problem, const GreedyBuffers& buffers,
                                  int64_t e) {
  using P = PanelType<T>;
  const int64_t blocks = panel_blocks(problem);
  if (blocks == 0) return nullptr;
  const int64_t d = problem.features.d;
  const int64_t size = blocks * kPanelRows * d;
  EngineHeader& header = engine_header(problem, buffers);
  P* panels = reinterpret_cast<P*>(static_cast<char*>(buffers.extra) + kHeaderBytes);
  if (!header.panels_built) {
    for (int64_t copy = 0; copy < panel_copies(problem); ++copy) {
      const T* features = static_cast<const T*>(problem.features.data) + copy * problem.member_stride;
      P* panel = panels + copy * size;
#pragma omp parallel for schedule(static) if (size >= kParallelWork)
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t r = 0; r < kPanelRows; ++r) {
          const T* row = features + (b * kPanelRows + r) * d;
          for (int64_t a = 0; a < d; ++a) {
            panel[(b * d + a) * kPanelRows + r] = static_cast<P>(row[a]);
          }
        }
      }
    }
    header.panels_built = true;
  }
  return panels + (problem.member_stride == 0 ? 0 : e) * size;
}

// out_r = sum_a Phi_ra x_a for the rows of kGroup consecutive panels, out_r at out[r * stride],
// each row in order from a = 0 with one float64 accumulator, as row_products sums it. A product
// and a sum are rounded apart (no contraction), so a row's adds form one chain; several panels
// at once give the CPU independent chains to overlap instead of waiting on one add at a time.
template <int kGroup, class T>
__attribute__((always_inline)) inline void panel_group(const T* panels, int64_t d,
                                                        const double* x, double* out,
                                                        int64_t stride) {
  double acc[kGroup][kPanelRows] = {};
  for (int64_t a = 0; a < d; ++a) {
    const double xa = x[a];
    for (int g = 0; g < kGroup; ++g) {
      const T* column = panels + (g * d + a) * kPanelRows;
#pragma omp simd
      for (int64_t r = 0; r < kPanelRows; ++r) acc[g][r] += static_cast<double>(column[r]) * xa;
    }
  }
  for (int g = 0; g < kGroup; ++g) {
    for (int64_t r = 0; r < kPanelRows; ++r) out[(g * kPanelRows + r) * stride] = acc[g][r];
  }
}

// Panels kPanelGroup at a time (as many chains as the vector units keep busy) and the rest one
// by one, over blocks [first, last).
constexpr int kPanelGroup = 4;

template <class T>
__attribute__((always_inline)) inline void panel_range(const T* panels, int64_t first,
                                                        int64_t last, int64_t d, const double* x,
                                                        double* out, int64_t stride) {
  int64_t b = first;
  for (; b + kPanelGroup <= last; b += kPanelGroup) {
    panel_group<kPanelGroup>(panels + b * d * kPanelRows, d, x, out + b * kPanelRows * stride,
                             stride);
  }
  for (; b < last; ++b) {
    panel_group<1>(panels + b * d * kPanelRows, d, x, out + b * kPanelRows * stride, stride);
  }
}

#ifdef ACTIVERM_WIDE_VECTORS
// panel_group in AVX-512 intrinsics: each panel's 16 rows as two vectors, each loaded (and
// widened, for float panels) straight from memory. The generic loop compiled for AVX-512 read
// a float column as one 16-float vector and split it with a shuffle before widening the upper
// half, an extra load and shuffle for every eight multiply-adds. Lane by lane the same products
// and sums in the same order: the same bits.
template <int kGroup, class T>
ACTIVERM_WIDE inline void wide_panel_group(const T* panels, int64_t d, const double* x,
                                           double* out, int64_t stride) {
  static_assert(kPanelRows == 16, "a panel's rows are two vectors of eight");
  __m512d low[kGroup];   // rows 0..7 of each panel
  __m512d high[kGroup];  // rows 8..15
#pragma GCC unroll 4
  for (int g = 0; g < kGroup; ++g) {
    low[g] = _mm512_setzero_pd();
    high[g] = _mm512_setzero_pd();
  }
  for (int64_t a = 0; a < d; ++a) {
    const __m512d xa = _mm512_set1_pd(x[a]);
#pragma GCC unroll 4
    for (int g = 0; g < kGroup; ++g) {
      const T* column = panels + (g * d + a) * kPanelRows;
      low[g] = _mm512_add_pd(low[g], _mm512_mul_pd(load_eight(column), xa));
      high[g] = _mm512_add_pd(high[g], _mm512_mul_pd(load_eight(column + 8), xa));
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < kGroup; ++g) {
    if (stride == 1) {
      _mm512_storeu_pd(out + g * kPanelRows, low[g]);
      _mm512_storeu_pd(out + g * kPanelRows + 8, high[g]);
    } else {
      alignas(64) double rows[kPanelRows];
      _mm512_store_pd(rows, low[g]);
      _mm512_store_pd(rows + 8, high[g]);
      for (int64_t r = 0; r < kPanelRows; ++r) out[(g * kPanelRows + r) * stride] = rows[r];
    }
  }
}

// panel_range in those vectors, over blocks [first, last).
template <class T>
ACTIVERM_WIDE void wide_panel_range(const T* panels, int64_t first, int64_t last, int64_t d,
                                    const double* x, double* out, int64_t stride) {
  int64_t b = first;
  for (; b + kPanelGroup <= last; b += kPanelGroup) {
    wide_panel_group<kPanelGroup>(panels + b * d * kPanelRows, d, x,
                                  out + b * kPanelRows * stride, stride);
  }
  for (; b < last; ++b) {
    wide_panel_group<1>(panels + b * d * kPanelRows, d, x, out + b * kPanelRows * stride, stride);
  }
}
#endif

// panel_group over `blocks` panels, out_r at out[r * stride], in AVX-512 vectors if `wide`.
template <class T>
void panel_products(const T* panels, int64_t blocks, int64_t d, const double* x, double* out,
                    int64_t stride, [[maybe_unused]] bool wide) {
  const int64_t chunks = (blocks + kPanelBlockChunk - 1) / kPanelBlockChunk;
#pragma omp parallel for schedule(dynamic, 1) \
    if (chunks > 1 && blocks * kPanelRows * d >= kPanelParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * kPanelBlockChunk;
    const int64_t last = std::min(blocks, first + kPanelBlockChunk);
#ifdef ACTIVERM_WIDE_VECTORS
    if (wide) {
      wide_panel_range(panels, first, last, d, x, out, stride);
      continue;
    }
#endif
    panel_range(panels, first, last, d, x, out, stride);
  }
}

// f = S^T x: f_c sums S_ac x_a over a in order. A block of kColumns columns is summed in
// registers down all rows (one pass over f, not one per row); threads own column blocks, so
// every f_c has one fixed order whatever the thread count; the O(d^2) parts only pay for threads
// at large d.
void transposed_product(const double* factor, int64_t d, const double* x, double* f) {
  constexpr int64_t kColumns = 32;
  const int64_t blocks = (d + kColumns - 1) / kColumns;
#pragma omp parallel for schedule(static) if (d >= kParallelDim)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kColumns;
    const int64_t width = std::min(kColumns, d - first);
    double acc[kColumns] = {};
    if (width == kColumns) {
      for (int64_t a = 0; a < d; ++a) {
        const double* row = factor + a * d + first;
        const double xa = x[a];
        for (int64_t c = 0; c < kColumns; ++c) acc[c] += row[c] * xa;
      }
    } else {
      for (int64_t a = 0; a < d; ++a) {
        const double* row = factor + a * d + first;
        const double xa = x[a];
        for (int64_t c = 0; c < width; ++c) acc[c] += row[c] * xa;
      }
    }
    for (int64_t c = 0; c < width; ++c) f[first + c] = acc[c];
  }
}

// q*_e = ||S_e^T d*_e||^2 of the choice for member e, afresh from the factor rather than from
// the running score, so the gain is exact even after many downdates. Leaves d*_e and f_e in the
// workspace.
template <class T>
double fresh_quadform(const GreedyProblem& problem, GreedyState state,
                      const GreedyBuffers& buffers, int64_t e) {
  const int64_t d = problem.features.d;
  const GreedyChoice& choice = *buffers.choice;
  const T* features = static_cast<const T*>(problem.features.data) + e * problem.member_stride;
  const T* fi = features + choice.first * d;
  const T* fj = features + choice.second * d;
  double* diff = buffers.difference + e * d;
  double* f = buffers.transformed + e * d;
  for (int64_t a = 0; a < d; ++a) diff[a] = scaled_difference(fi[a], fj[a], problem.features.scale);
  transposed_product(state.factor + e * d * d, d, diff, f);
  double q_star = 0.0;
  for (int64_t c = 0; c < d; ++c) q_star += f[c] * f[c];
  return q_star;
}

// Member e's factor update and projection v_e = Phi_e u_e for the next sweep.
template <class T>
void prepare_member(const GreedyProblem& problem, GreedyState state,
                    const GreedyBuffers& buffers, int64_t e, double q_star) {
  const int64_t n = problem.features.n;
  const int64_t d = problem.features.d;
  const double w_star = buffers.choice->weights[e];
  const T* features = static_cast<const T*>(problem.features.data) + e * problem.member_stride;
  double* factor = state.factor + e * d * d;
  const double* f = buffers.transformed + e * d;
  double* u = buffers.direction + e * d;
  row_products(factor, d, d, f, u, 1);
  buffers.downdate[e] = rank_one_coefficient(w_star, q_star);
  const double gamma = factor_update_coefficient(w_star, q_star);
#pragma omp parallel for schedule(static) if (d >= kParallelDim)
  for (int64_t a = 0; a < d; ++a) {
    double* row = factor + a * d;
    const double gu = gamma * u[a];
    for (int64_t c = 0; c < d; ++c) row[c] -= gu * f[c];
  }
  // v = (scale Phi) u = Phi (scale u): scaling u instead of every feature is exact.
  for (int64_t a = 0; a < d; ++a) u[a] *= problem.features.scale;
  const auto* panels = member_panels<T>(problem, buffers, e);
  const int64_t in_panels = panels == nullptr ? 0 : panel_blocks(problem) * kPanelRows;
  if (panels != nullptr) {
    panel_products(panels, in_panels / kPanelRows, d, u, buffers.projection + e, problem.members,
                   engine_header(problem, buffers).wide);
  }
  row_products(features + in_panels * d, n - in_panels, d, u,
               buffers.projection + e + in_panels * problem.members, problem.members);
}

// Counts an applied choice against the per-prompt quota (views.h: PromptQuota) and masks every
// local pair of a prompt it fills: O(pairs of that prompt), nothing without a quota.
void count_against_quota(const GreedyProblem& problem, GreedyState state,
                         const GreedyChoice& choice) {
  const PromptQuota& quota = problem.quota;
  if (quota.limit <= 0) return;
  const int64_t prompts[2] = {quota.prompt_of[choice.first], quota.prompt_of[choice.second]};
  for (int side = 0; side < (prompts[0] == prompts[1] ? 1 : 2); ++side) {
    const int64_t prompt = prompts[side];
    if (++quota.used[prompt] != quota.limit) continue;
    for (int64_t at = quota.offsets[prompt]; at < quota.offsets[prompt + 1]; ++at) {
      double* q = state.scores + quota.pairs[at] * problem.members;
      for (int64_t e = 0; e < problem.members; ++e) q[e] = kNaN;
    }
  }
}

template <class T>
void apply(const GreedyProblem& problem, GreedyState state, const GreedyBuffers& buffers,
           int64_t step, int64_t* chosen, double* gains, bool prepare_next) {
  GreedyChoice& choice = *buffers.choice;
  chosen[step] = choice.index;
  gains[step] = kNaN;
  if (choice.index < 0) return;  // no pair (or a refresh pending): touch nothing
  double q_star[kMaxMembers];
  double gain = 0.0;
  double fresh = 0.0;
  const bool first = buffers.reference[0] != 0.0;
  bool fallen = false;
  for (int64_t e = 0; e < problem.members; ++e) {
    q_star[e] = fresh_quadform<T>(problem, state, buffers, e);
    const double x = choice.weights[e] * q_star[e];
    gain += std::log1p(x);
    fresh = e == 0 ? x : combined_score(fresh, x);
    if (first) buffers.reference[1 + e] = x;
    fallen = fallen || fell(x, buffers.reference[1 + e]);
  }
  buffers.reference[0] = 0.0;
  if (problem.refresh_tolerance > 0.0 &&
      (fallen || drifted(choice.score, fresh, problem.refresh_tolerance))) {
    choice.index = kRefreshChoice;
    chosen[step] = kRefreshChoice;
    return;
  }
  gains[step] = gain;
  const int64_t local = choice.index - problem.first_index;
  if (local >= 0 && local < problem.pairs.count) {
    for (int64_t e = 0; e < problem.members; ++e) {
      state.scores[local * problem.members + e] = kNaN;
    }
  }
  count_against_quota(problem, state, choice);
  if (!prepare_next) return;
  for (int64_t e = 0; e < problem.members; ++e) {
    prepare_member<T>(problem, state, buffers, e, q_star[e]);
  }
}

GreedyBuffers buffers_of(const GreedyProblem& problem, GreedyState state) {
  return GreedyLayout(problem, extra_bytes(problem)).carve(state.workspace);
}

}  // namespace

int64_t CpuKernels::greedy_workspace_bytes(const GreedyProblem& problem) {
  return GreedyLayout(problem, extra_bytes(problem)).total;
}

// Up to the end of the EngineHeader: the panels after it are written before they are read.
int64_t CpuKernels::greedy_zeroed_bytes(const GreedyProblem& problem) {
  return GreedyLayout(problem, extra_bytes(problem)).extra + kHeaderBytes;
}

void CpuKernels::greedy_sweep(const GreedyProblem& problem, GreedyState state, bool downdate,
                              void*) {
  const GreedyBuffers buffers = buffers_of(problem, state);
  dispatch_sources(problem, [&](const auto& pairs, const auto& weights) {
    sweep(problem, state, buffers, downdate, pairs, weights);
  });
}

void CpuKernels::greedy_apply(const GreedyProblem& problem, GreedyState state, int64_t step,
                              int64_t* chosen, double* gains, bool prepare_next, void*) {
  const GreedyBuffers buffers = buffers_of(problem, state);
  dispatch_feature_type(problem.features.dtype, [&](auto t) {
    apply<decltype(t)>(problem, state, buffers, step, chosen, gains, prepare_next);
  });
}

void CpuKernels::greedy_run(const GreedyProblem& problem, GreedyState state, int64_t k,
                            int64_t* chosen, double* gains, void* stream) {
  run_greedy_steps<CpuKernels>(problem, state, k, chosen, gains, stream, TeamTuner());
}

}  // namespace activerm
