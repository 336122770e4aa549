// Edge cases of the CPU kernels (cpu_kernels.h), called directly and checked against plain
// float64 computations written here. Built only with -DACTIVERM_FAST_TESTS=ON (CMakeLists.txt),
// normally under AddressSanitizer + UndefinedBehaviorSanitizer (-DACTIVERM_FAST_SANITIZE=ON),
// and run by ctest from .ci/run.
//
// Every buffer a kernel sees is a std::vector of exactly the size the kernel is documented to
// use (the greedy workspace exactly greedy_workspace_bytes), so one element too far is a heap
// overflow AddressSanitizer reports. Empty inputs are null pointers, as torch hands over for
// empty tensors.
//
// Covered, for float32 and float64 features and int32 and int64 pairs alike:
//   pair_diff, fisher_weights, pair_quadform, fisher_matrix: P = 0 (null pointers), P = 1,
//     n = 2 with d = 1, d > n, several column blocks, null / random / zero weights, reward gaps
//     up to where e^-|D| underflows, features near 1e+-300 (1e+-30 for float32) read with the
//     power-of-two scale that undoes them (bit-identical to the unscaled features).
//   project_features (where the CPU has AVX-512): rows fewer than a tile and past it, column
//     counts of masked lanes, full, triangular and block-zero matrices, d = 0, the in-order
//     float64 sums written here, 1 thread against 2 bit for bit.
//   the greedy engine, single model and E = 3 members (stacked features, member_stride n d, or
//     shared, stride 0), E = 64: P = 0, P = 1, n = 2 with d = 1, d > n, k = 0, k = available,
//     k > available (-1 and NaN for the rest), masked pairs (one member's NaN masks the pair),
//     every score NaN, zero weights, no weights (every weight 1), exact ties (lowest index,
//     also across sweep chunks and threads), ridge and general SPD priors, extreme magnitudes with matching scale, shards
//     with first_index > 0 (a sweep/choose/apply loop over shards against the single run),
//     the refresh stop (kRefreshChoice), and the sizes where the parallel paths switch on
//     (1 thread against 2, bit for bit).
//   Checked against float64 written here: chosen pairs distinct and available, each gain equal
//     to sum_e log1p(w_e d^T F_e^-1 d) from a dense Cholesky solve and no smaller than any other
//     pair's, gains non-increasing, S S^T F = I for the final factor, every remaining score
//     d^T F^-1 d; and greedy_run equal, bit for bit, to sweep(false); (apply; sweep(true))*,
//     and to the exact lazy sweep's run (LazyGreedyCpu: picks, gains and factor).
//
// Usage: kernel_edge_cases [substring]   runs the tests whose name contains substring (all
// without). Exit status 0 when every check held, 1 otherwise.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "activerm/cpu_kernels.h"
#include "activerm/greedy_workspace.h"
#include "activerm/wide_vectors.h"
#include "../cpu/feature_projection_cpu.h"
#include "../cpu/lazy_greedy_cpu.h"

using activerm::CpuKernels;
using activerm::FeatureView;
using activerm::GreedyChoice;
using activerm::GreedyProblem;
using activerm::GreedyState;
using activerm::LazyGreedyCpu;
using activerm::PairView;
using activerm::PromptQuota;

namespace {

// ---- checks -------------------------------------------------------------------------------

int g_failures = 0;
int g_reported = 0;
std::string g_test;
std::string g_case;  // what the current check is about (printed with a failure)

void fail(const char* file, int line, const std::string& what) {
  ++g_failures;
  if (++g_reported <= 40) {
    std::fprintf(stderr, "%s:%d: FAILED in %s [%s]: %s\n", file, line, g_test.c_str(),
                 g_case.c_str(), what.c_str());
  } else if (g_reported == 41) {
    std::fprintf(stderr, "... further failures not printed\n");
  }
}

#define CHECK(cond)                                    \
  do {                                                 \
    if (!(cond)) fail(__FILE__, __LINE__, #cond);      \
  } while (0)

std::string describe(double a, double b) {
  char text[128];
  std::snprintf(text, sizeof text, "%.17g vs %.17g", a, b);
  return text;
}

bool close(double a, double b, double rtol, double atol = 0.0) {
  if (std::isnan(a) || std::isnan(b)) return false;
  if (a == b) return true;
  return std::fabs(a - b) <= atol + rtol * std::max(std::fabs(a), std::fabs(b));
}

#define CHECK_CLOSE(a, b, rtol, atol)                                                      \
  do {                                                                                     \
    const double check_a_ = (a);                                                           \
    const double check_b_ = (b);                                                           \
    if (!close(check_a_, check_b_, (rtol), (atol)))                                        \
      fail(__FILE__, __LINE__, std::string(#a " ~= " #b ": ") + describe(check_a_, check_b_)); \
  } while (0)

// Same bits, or both NaN (a NaN's payload is no part of any contract).
bool same_double(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool same_doubles(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!same_double(a[i], b[i])) return false;
  }
  return true;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// ---- deterministic random numbers ---------------------------------------------------------

struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double symmetric() { return 2.0 * uniform() - 1.0; }                         // [-1, 1)
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

template <class T>
std::vector<T> random_features(Rng& rng, int64_t count) {
  std::vector<T> out(static_cast<size_t>(count));
  for (auto& v : out) v = static_cast<T>(rng.symmetric());
  return out;
}

// P random ordered pairs of distinct items of n (n >= 2), row-major (P, 2).
template <class I>
std::vector<I> random_pairs(Rng& rng, int64_t n, int64_t count) {
  std::vector<I> out(static_cast<size_t>(2 * count));
  for (int64_t k = 0; k < count; ++k) {
    const int64_t i = rng.below(n);
    int64_t j = rng.below(n - 1);
    if (j >= i) ++j;
    out[2 * k] = static_cast<I>(i);
    out[2 * k + 1] = static_cast<I>(j);
  }
  return out;
}

// Every ordered pair (i, j), i != j, of n items.
template <class I>
std::vector<I> all_pairs(int64_t n) {
  std::vector<I> out;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      out.push_back(static_cast<I>(i));
      out.push_back(static_cast<I>(j));
    }
  }
  return out;
}

template <class T>
const char* type_name() {
  return std::is_same<T, double>::value ? "f64" : "f32";
}
template <class I>
const char* index_name() {
  return std::is_same<I, int64_t>::value ? "i64" : "i32";
}

template <class T>
FeatureView feature_view(const std::vector<T>& f, int64_t n, int64_t d, double scale = 1.0) {
  return FeatureView{f.data(), std::is_same<T, double>::value, n, d, scale};
}
template <class I>
PairView pair_view(const std::vector<I>& p) {
  return PairView{p.data(), std::is_same<I, int64_t>::value,
                  static_cast<int64_t>(p.size() / 2)};
}

// ---- dense float64 linear algebra for the references --------------------------------------

// Lower Cholesky factor of the SPD (d, d) matrix a; false when a pivot is not positive.
bool cholesky(const std::vector<double>& a, int64_t d, std::vector<double>& lower) {
  lower.assign(static_cast<size_t>(d * d), 0.0);
  for (int64_t j = 0; j < d; ++j) {
    double diag = a[j * d + j];
    for (int64_t c = 0; c < j; ++c) diag -= lower[j * d + c] * lower[j * d + c];
    if (!(diag > 0.0)) return false;
    const double root = std::sqrt(diag);
    lower[j * d + j] = root;
    for (int64_t i = j + 1; i < d; ++i) {
      double v = a[i * d + j];
      for (int64_t c = 0; c < j; ++c) v -= lower[i * d + c] * lower[j * d + c];
      lower[i * d + j] = v / root;
    }
  }
  return true;
}

// v^T A^-1 v = ||L^-1 v||^2 for A = L L^T.
double inverse_quadform(const std::vector<double>& lower, int64_t d, const double* v) {
  std::vector<double> y(static_cast<size_t>(d));
  double total = 0.0;
  for (int64_t i = 0; i < d; ++i) {
    double s = v[i];
    for (int64_t c = 0; c < i; ++c) s -= lower[i * d + c] * y[c];
    y[i] = s / lower[i * d + i];
    total += y[i] * y[i];
  }
  return total;
}

// A^-1 for A = L L^T (column by column).
std::vector<double> inverse(const std::vector<double>& lower, int64_t d) {
  std::vector<double> out(static_cast<size_t>(d * d));
  std::vector<double> y(static_cast<size_t>(d)), x(static_cast<size_t>(d));
  for (int64_t col = 0; col < d; ++col) {
    for (int64_t i = 0; i < d; ++i) {
      double s = i == col ? 1.0 : 0.0;
      for (int64_t c = 0; c < i; ++c) s -= lower[i * d + c] * y[c];
      y[i] = s / lower[i * d + i];
    }
    for (int64_t i = d - 1; i >= 0; --i) {
      double s = y[i];
      for (int64_t c = i + 1; c < d; ++c) s -= lower[c * d + i] * x[c];
      x[i] = s / lower[i * d + i];
    }
    for (int64_t i = 0; i < d; ++i) out[i * d + col] = x[i];
  }
  return out;
}

// ---- a greedy problem and its float64 reference -----------------------------------------

// Features (1 or E, n, d) of type T read times the power of two `scale`, pairs of type I,
// weights (P, E), and per member a prior F0'_e in the scaled units (F0' = scale^2 F0), from
// which the engine's start is built as Python's _design._start builds it: S0 = L^-T for
// F0' = L L^T and scores q = ||S0^T d'||^2 = d'^T F0'^-1 d'.
template <class T, class I>
struct Problem {
  int64_t n = 0, d = 0, members = 1;
  bool shared = false;  // one feature matrix for all members (member_stride 0)
  double scale = 1.0;
  std::vector<T> features;
  std::vector<I> pairs;
  std::vector<double> weights;
  std::vector<double> prior;    // (E, d, d)
  std::vector<double> factor0;  // (E, d, d)
  std::vector<double> scores0;  // (P, E)

  int64_t count() const { return static_cast<int64_t>(pairs.size() / 2); }
  const T* member_features(int64_t e) const {
    return features.data() + (shared ? 0 : e * n * d);
  }
  int64_t first(int64_t k) const { return static_cast<int64_t>(pairs[2 * k]); }
  int64_t second(int64_t k) const { return static_cast<int64_t>(pairs[2 * k + 1]); }

  // d'_e,k: the scaled difference exactly as the kernels form it (pair_math.h).
  std::vector<double> difference(int64_t e, int64_t k) const {
    const T* f = member_features(e);
    std::vector<double> out(static_cast<size_t>(d));
    for (int64_t a = 0; a < d; ++a) {
      out[a] = static_cast<double>(f[first(k) * d + a]) * scale -
               static_cast<double>(f[second(k) * d + a]) * scale;
    }
    return out;
  }

  void set_ridge(double ridge) {
    prior.assign(static_cast<size_t>(members * d * d), 0.0);
    for (int64_t e = 0; e < members; ++e) {
      for (int64_t a = 0; a < d; ++a) prior[e * d * d + a * d + a] = ridge * (1.0 + 0.25 * e);
    }
  }

  // Random SPD priors: ridge I + B B^T / d.
  void set_random_prior(Rng& rng, double ridge) {
    prior.assign(static_cast<size_t>(members * d * d), 0.0);
    for (int64_t e = 0; e < members; ++e) {
      std::vector<double> b(static_cast<size_t>(d * d));
      for (auto& v : b) v = rng.symmetric();
      double* p = prior.data() + e * d * d;
      for (int64_t i = 0; i < d; ++i) {
        for (int64_t j = 0; j < d; ++j) {
          double s = 0.0;
          for (int64_t c = 0; c < d; ++c) s += b[i * d + c] * b[j * d + c];
          p[i * d + j] = s / static_cast<double>(d) + (i == j ? ridge : 0.0);
        }
      }
    }
  }

  // Start (factor0, scores0) from the priors; a NaN initial score masks a pair.
  void start(const std::vector<bool>& masked = {}) {
    factor0.assign(static_cast<size_t>(members * d * d), 0.0);
    for (int64_t e = 0; e < members; ++e) {
      std::vector<double> p(prior.begin() + e * d * d, prior.begin() + (e + 1) * d * d);
      std::vector<double> lower;
      bool ok = cholesky(p, d, lower);
      CHECK(ok);
      // S0 = L^-T: column c of L^-1 by forward substitution is row c of S0^T.
      for (int64_t c = 0; c < d; ++c) {
        std::vector<double> y(static_cast<size_t>(d), 0.0);
        for (int64_t i = 0; i < d; ++i) {
          double s = i == c ? 1.0 : 0.0;
          for (int64_t m = 0; m < i; ++m) s -= lower[i * d + m] * y[m];
          y[i] = s / lower[i * d + i];
        }
        // y = L^-1 e_c, the c-th column of L^-1; S0[a][i] = L^-1[i][a], so S0[c][i] = y[i].
        for (int64_t i = 0; i < d; ++i) factor0[e * d * d + c * d + i] = y[i];
      }
    }
    const int64_t count_ = count();
    scores0.assign(static_cast<size_t>(count_ * members), 0.0);
    for (int64_t k = 0; k < count_; ++k) {
      for (int64_t e = 0; e < members; ++e) {
        const std::vector<double> diff = difference(e, k);
        const double* s = factor0.data() + e * d * d;
        double q = 0.0;
        for (int64_t c = 0; c < d; ++c) {
          double f = 0.0;
          for (int64_t a = 0; a < d; ++a) f += s[a * d + c] * diff[a];
          q += f * f;
        }
        scores0[k * members + e] = q;
      }
      if (!masked.empty() && masked[k]) {
        for (int64_t e = 0; e < members; ++e) {
          scores0[k * members + e] = std::numeric_limits<double>::quiet_NaN();
        }
      }
    }
  }

  // The engine's view of pairs [begin, end) as a shard whose pair 0 is global pair first_index.
  // refresh_tolerance 0: the engine never stops for a refresh.
  GreedyProblem view(int64_t first_index = 0, int64_t begin = 0, int64_t end = -1,
                     double refresh_tolerance = 0.0) const {
    if (end < 0) end = count();
    const bool empty = end == begin;
    return GreedyProblem{
        FeatureView{features.data(), std::is_same<T, double>::value, n, d, scale},
        members,
        shared ? 0 : n * d,
        PairView{empty ? nullptr : pairs.data() + 2 * begin, std::is_same<I, int64_t>::value,
                 end - begin},
        empty ? nullptr : weights.data() + begin * members,
        first_index,
        refresh_tolerance};
  }
};

// The tolerance Python's _design.greedy runs the engine with.
constexpr double kRefreshTolerance = 1e-9;

struct Engine {
  std::vector<double> scores;
  std::vector<double> factor;
  // 8-byte aligned, exactly greedy_workspace_bytes: zeroed as far as greedy_zeroed_bytes, then
  // all bits set (NaN doubles), as unwritten memory may hold anything
  std::vector<uint64_t> workspace;

  Engine(const GreedyProblem& problem, std::vector<double> scores_, std::vector<double> factor_)
      : scores(std::move(scores_)), factor(std::move(factor_)) {
    const int64_t bytes = CpuKernels::greedy_workspace_bytes(problem);
    const int64_t zeroed = CpuKernels::greedy_zeroed_bytes(problem);
    CHECK(bytes >= static_cast<int64_t>(sizeof(GreedyChoice)));
    CHECK(bytes % 8 == 0 && zeroed % 8 == 0 && zeroed <= bytes);
    workspace.assign(static_cast<size_t>(bytes / 8), ~uint64_t{0});
    std::fill(workspace.begin(), workspace.begin() + zeroed / 8, uint64_t{0});
  }
  GreedyState state() { return GreedyState{scores.data(), factor.data(), workspace.data()}; }
  GreedyChoice& choice() { return *reinterpret_cast<GreedyChoice*>(workspace.data()); }
};

struct Selection {
  std::vector<int64_t> chosen;
  std::vector<double> gains;
};

// The same k steps with the exact lazy sweep (lazy_greedy_cpu.h) instead of greedy_sweep.
Selection run_lazy(const GreedyProblem& problem, Engine& engine, int64_t k) {
  Selection s{std::vector<int64_t>(static_cast<size_t>(k), -7),
              std::vector<double>(static_cast<size_t>(k), -7.0)};
  LazyGreedyCpu lazy(problem, k);
  lazy.run(problem, engine.state(), k, s.chosen.data(), s.gains.data());
  CHECK(lazy.downdates() <= problem.pairs.count * std::max<int64_t>(k - 1, 0));
  return s;
}

Selection run(const GreedyProblem& problem, Engine& engine, int64_t k) {
  Selection s{std::vector<int64_t>(static_cast<size_t>(k), -7),
              std::vector<double>(static_cast<size_t>(k), -7.0)};
  CpuKernels::greedy_run(problem, engine.state(), k, s.chosen.data(), s.gains.data(), nullptr);
  return s;
}

// The documented composition: sweep(false), then k times apply and (but the last) sweep(true).
Selection compose(const GreedyProblem& problem, Engine& engine, int64_t k) {
  Selection s{std::vector<int64_t>(static_cast<size_t>(k), -7),
              std::vector<double>(static_cast<size_t>(k), -7.0)};
  if (k <= 0) return s;
  CpuKernels::greedy_sweep(problem, engine.state(), false, nullptr);
  for (int64_t t = 0; t < k; ++t) {
    const bool prepare_next = t + 1 < k;
    CpuKernels::greedy_apply(problem, engine.state(), t, s.chosen.data(), s.gains.data(),
                             prepare_next, nullptr);
    if (prepare_next) CpuKernels::greedy_sweep(problem, engine.state(), true, nullptr);
  }
  return s;
}

bool same_selection(const Selection& a, const Selection& b) {
  return a.chosen == b.chosen && same_doubles(a.gains, b.gains);
}

// Checks a k-step selection made by greedy_run from the problem's start against float64:
// every step's pair is available and new, its gain is sum_e log1p(w_e d'^T F_e^-1 d') from a
// dense solve, no available pair's dense gain beats it (up to rounding), once nothing is
// available the step records -1 and NaN; gains do not increase (log det is submodular); the
// final factor and scores match F after the choices run() prepared (all but the last).
template <class T, class I>
void check_against_dense(const Problem<T, I>& pr, const Selection& sel, const Engine& after,
                         int64_t first_index = 0, double rtol = 1e-9) {
  const int64_t d = pr.d, E = pr.members, P = pr.count();
  const int64_t k = static_cast<int64_t>(sel.chosen.size());
  std::vector<double> F = pr.prior;
  std::vector<bool> taken(static_cast<size_t>(P), false);
  std::vector<bool> available(static_cast<size_t>(P), true);
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t e = 0; e < E; ++e) {
      if (std::isnan(pr.scores0[p * E + e])) available[p] = false;
    }
  }
  // Dense gain of pair p under the current F.
  std::vector<std::vector<double>> lowers(static_cast<size_t>(E));
  auto dense_gain = [&](int64_t p) {
    double gain = 0.0;
    for (int64_t e = 0; e < E; ++e) {
      const std::vector<double> diff = pr.difference(e, p);
      gain += std::log1p(pr.weights[p * E + e] * inverse_quadform(lowers[e], d, diff.data()));
    }
    return gain;
  };
  auto factorise = [&]() {
    for (int64_t e = 0; e < E; ++e) {
      std::vector<double> fe(F.begin() + e * d * d, F.begin() + (e + 1) * d * d);
      const bool ok = cholesky(fe, d, lowers[e]);
      CHECK(ok);
    }
  };
  bool ended = false;
  for (int64_t t = 0; t < k; ++t) {
    factorise();
    double best = -std::numeric_limits<double>::infinity();
    int64_t left = 0;
    for (int64_t p = 0; p < P; ++p) {
      if (!available[p] || taken[p]) continue;
      ++left;
      best = std::max(best, dense_gain(p));
    }
    const int64_t global = sel.chosen[t];
    if (left == 0 || ended) {
      CHECK(global == -1);
      CHECK(std::isnan(sel.gains[t]));
      ended = true;
      continue;
    }
    const int64_t p = global - first_index;
    CHECK(p >= 0 && p < P);
    if (!(p >= 0 && p < P)) return;
    CHECK(available[p]);
    CHECK(!taken[p]);
    taken[p] = true;
    const double gain = dense_gain(p);
    CHECK_CLOSE(sel.gains[t], gain, rtol, 1e-300);
    CHECK(gain >= best - rtol * std::fabs(best) - 1e-300);
    if (t > 0) CHECK(sel.gains[t] <= sel.gains[t - 1] * (1.0 + rtol) + 1e-300);
    if (t + 1 < k) {  // run() prepares every step but the last
      for (int64_t e = 0; e < E; ++e) {
        const std::vector<double> diff = pr.difference(e, p);
        const double w = pr.weights[p * E + e];
        double* fe = F.data() + e * d * d;
        for (int64_t a = 0; a < d; ++a) {
          for (int64_t b = 0; b < d; ++b) fe[a * d + b] += w * diff[a] * diff[b];
        }
      }
    }
  }
  // The factor: S_e S_e^T = F_e^-1, checked as S S^T F = I.
  factorise();
  for (int64_t e = 0; e < E; ++e) {
    const double* s = after.factor.data() + e * d * d;
    const double* fe = F.data() + e * d * d;
    std::vector<double> sst(static_cast<size_t>(d * d), 0.0);
    for (int64_t a = 0; a < d; ++a) {
      for (int64_t b = 0; b < d; ++b) {
        double v = 0.0;
        for (int64_t c = 0; c < d; ++c) v += s[a * d + c] * s[b * d + c];
        sst[a * d + b] = v;
      }
    }
    double worst = 0.0;
    for (int64_t a = 0; a < d; ++a) {
      for (int64_t b = 0; b < d; ++b) {
        double v = 0.0;
        for (int64_t c = 0; c < d; ++c) v += sst[a * d + c] * fe[c * d + b];
        worst = std::max(worst, std::fabs(v - (a == b ? 1.0 : 0.0)));
      }
    }
    CHECK_CLOSE(worst, 0.0, 0.0, 1e-8);
  }
  // Scores: NaN for every chosen pair and every masked one, d'^T F^-1 d' for the rest.
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t e = 0; e < E; ++e) {
      const double got = after.scores[p * E + e];
      if (taken[p]) {
        CHECK(std::isnan(got));
      } else if (available[p]) {
        const std::vector<double> diff = pr.difference(e, p);
        const double want = inverse_quadform(lowers[e], d, diff.data());
        CHECK_CLOSE(got, want, 1e-8, 1e-12 * std::max(1.0, pr.scores0[p * E + e]));
      }
    }
  }
}

// ---- pair kernels -------------------------------------------------------------------------

template <class T, class I>
void pair_diff_case(Rng& rng, int64_t n, int64_t d, const std::vector<I>& pairs,
                    double magnitude) {
  std::vector<T> f = random_features<T>(rng, n * d);
  for (auto& v : f) v = static_cast<T>(static_cast<double>(v) * magnitude);
  const int64_t P = static_cast<int64_t>(pairs.size() / 2);
  std::vector<T> out(static_cast<size_t>(P * d));
  CpuKernels::pair_diff(feature_view(f, n, d), pair_view(pairs), out.data(), nullptr);
  for (int64_t k = 0; k < P; ++k) {
    for (int64_t a = 0; a < d; ++a) {
      const T want = f[pairs[2 * k] * d + a] - f[pairs[2 * k + 1] * d + a];
      CHECK(std::memcmp(&out[k * d + a], &want, sizeof(T)) == 0);
    }
  }
}

template <class T, class I>
void test_pair_diff() {
  Rng rng(11);
  g_case = std::string(type_name<T>()) + "/" + index_name<I>();
  std::vector<I> some = random_pairs<I>(rng, 5, 9);
  some.push_back(3);  // a self pair: difference 0
  some.push_back(3);
  pair_diff_case<T, I>(rng, 5, 3, some, 1.0);
  pair_diff_case<T, I>(rng, 5, 3, {}, 1.0);                // P = 0: null pairs and output
  pair_diff_case<T, I>(rng, 2, 1, {1, 0}, 1.0);            // P = 1, n = 2, d = 1
  pair_diff_case<T, I>(rng, 3, 40, all_pairs<I>(3), 1.0);  // d > n
  const double big = std::is_same<T, double>::value ? 1e300 : 1e30;
  const double tiny = std::is_same<T, double>::value ? 1e-300 : 1e-30;
  pair_diff_case<T, I>(rng, 6, 5, random_pairs<I>(rng, 6, 20), big);
  pair_diff_case<T, I>(rng, 6, 5, random_pairs<I>(rng, 6, 20), tiny);
}

template <class T, class I>
void test_fisher_weights() {
  g_case = std::string(type_name<T>()) + "/" + index_name<I>();
  // Reward differences from 0 up to where e^-|D| underflows, both signs.
  const double deltas[] = {0.0, 1e-8, 0.5, -1.0, 3.0, -17.0, 40.0, -80.0, 300.0, -700.0, 745.0,
                           -800.0, 1e4};
  const int64_t count = static_cast<int64_t>(sizeof deltas / sizeof deltas[0]);
  for (int64_t members : {int64_t{1}, int64_t{3}}) {
    const int64_t n = 2 * count;
    std::vector<T> rewards(static_cast<size_t>(members * n));
    std::vector<I> pairs;
    for (int64_t k = 0; k < count; ++k) {
      for (int64_t e = 0; e < members; ++e) {
        // Member e shifts both rewards by e: the difference (and weight) stays the same for
        // members where it is exact, and the pairs run backwards to test the indexing.
        rewards[e * n + 2 * k] = static_cast<T>(deltas[k] / (1.0 + e) + e);
        rewards[e * n + 2 * k + 1] = static_cast<T>(e);
      }
      pairs.push_back(static_cast<I>(2 * k));
      pairs.push_back(static_cast<I>(2 * k + 1));
    }
    std::vector<double> out(static_cast<size_t>(count));
    CpuKernels::fisher_weights(rewards.data(), std::is_same<T, double>::value, members, n,
                               pair_view(pairs), out.data(), nullptr);
    for (int64_t k = 0; k < count; ++k) {
      double want = 0.0;
      for (int64_t e = 0; e < members; ++e) {
        const double delta = static_cast<double>(rewards[e * n + 2 * k]) -
                             static_cast<double>(rewards[e * n + 2 * k + 1]);
        // sigma(D)(1 - sigma(D)) = 1 / (2 + 2 cosh D): no cancellation, 0 once cosh overflows.
        want += 1.0 / (2.0 + 2.0 * std::cosh(delta));
      }
      want /= static_cast<double>(members);
      CHECK_CLOSE(out[k], want, 1e-13, 1e-300);
      CHECK(out[k] >= 0.0 && out[k] <= 0.25);
    }
    // P = 0: null pairs and output, nothing read or written.
    std::vector<I> none;
    std::vector<double> empty;
    CpuKernels::fisher_weights(rewards.data(), std::is_same<T, double>::value, members, n,
                               pair_view(none), empty.data(), nullptr);
  }
}

// d^T A d with A = scale I (projected null) or A (via projected = Phi A), directly.
template <class T, class I>
void quadform_case(Rng& rng, int64_t n, int64_t d, const std::vector<I>& pairs, int power) {
  const double fs = std::ldexp(1.0, -power);  // the feature scale that undoes the magnitude
  std::vector<T> base = random_features<T>(rng, n * d);
  std::vector<T> f(base.size());
  for (size_t i = 0; i < f.size(); ++i) f[i] = std::ldexp(base[i], power);
  const int64_t P = static_cast<int64_t>(pairs.size() / 2);
  const double scale = 0.75;
  std::vector<double> out(static_cast<size_t>(P)), out_base(static_cast<size_t>(P));
  CpuKernels::pair_quadform(feature_view(f, n, d, fs), pair_view(pairs), nullptr, scale,
                            out.data(), nullptr);
  CpuKernels::pair_quadform(feature_view(base, n, d), pair_view(pairs), nullptr, scale,
                            out_base.data(), nullptr);
  // Scaling by a power of two is exact: the same bits as the unscaled features.
  CHECK(same_bits(out, out_base));
  for (int64_t k = 0; k < P; ++k) {
    double want = 0.0;
    for (int64_t a = 0; a < d; ++a) {
      const double diff = static_cast<double>(base[pairs[2 * k] * d + a]) -
                          static_cast<double>(base[pairs[2 * k + 1] * d + a]);
      want += diff * diff;
    }
    CHECK_CLOSE(out[k], scale * want, 1e-14, 0.0);
  }
  // A SPD: projected G = Phi' A with Phi' the scaled features.
  std::vector<double> a(static_cast<size_t>(d * d));
  std::vector<double> b = random_features<double>(rng, d * d);
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      double s = i == j ? 0.5 : 0.0;
      for (int64_t c = 0; c < d; ++c) s += b[i * d + c] * b[j * d + c];
      a[i * d + j] = s;
    }
  }
  std::vector<double> g(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < d; ++c) {
      double s = 0.0;
      for (int64_t m = 0; m < d; ++m) s += static_cast<double>(base[i * d + m]) * a[m * d + c];
      g[i * d + c] = s;
    }
  }
  CpuKernels::pair_quadform(feature_view(f, n, d, fs), pair_view(pairs), g.data(), 1.0,
                            out.data(), nullptr);
  for (int64_t k = 0; k < P; ++k) {
    std::vector<double> diff(static_cast<size_t>(d));
    for (int64_t m = 0; m < d; ++m) {
      diff[m] = static_cast<double>(base[pairs[2 * k] * d + m]) -
                static_cast<double>(base[pairs[2 * k + 1] * d + m]);
    }
    double want = 0.0, size = 0.0;
    for (int64_t x = 0; x < d; ++x) {
      for (int64_t y = 0; y < d; ++y) {
        want += diff[x] * a[x * d + y] * diff[y];
        size += std::fabs(diff[x] * a[x * d + y] * diff[y]);
      }
    }
    CHECK_CLOSE(out[k], want, 0.0, 1e-13 * size + 1e-300);
  }
}

template <class T, class I>
void test_pair_quadform() {
  Rng rng(23);
  g_case = std::string(type_name<T>()) + "/" + index_name<I>();
  const int big = std::is_same<T, double>::value ? 996 : 100;
  for (int power : {0, 3, -5, big, -big}) {
    quadform_case<T, I>(rng, 7, 4, random_pairs<I>(rng, 7, 15), power);
    quadform_case<T, I>(rng, 2, 1, {0, 1}, power);                 // P = 1, n = 2, d = 1
    quadform_case<T, I>(rng, 3, 9, all_pairs<I>(3), power);        // d > n
    quadform_case<T, I>(rng, 4, 3, std::vector<I>{}, power);       // P = 0
  }
}

// The product half on L_w Phi: every entry on and above the diagonal the sum over the compared
// rows, in ascending order, of (phi_r,a - mean_a) L_r,c, and each below it its mirror, the mean
// the compared rows' sum in order over their count; the same bits in the two-lane and (where
// the CPU has them) the AVX-512 form (wide_vectors.h).
template <class T>
void product_case(const std::vector<T>& f, int64_t n, int64_t d,
                  const std::vector<double>& laplacian) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < n; ++r) {
    bool compared = false;
    for (int64_t c = 0; c < d; ++c) compared = compared || laplacian[r * d + c] != 0.0;
    if (compared) rows.push_back(r);
  }
  std::vector<double> mean(static_cast<size_t>(d), 0.0);
  for (int64_t r : rows) {
    for (int64_t a = 0; a < d; ++a) mean[a] += static_cast<double>(f[r * d + a]);
  }
  for (double& m : mean) m /= rows.empty() ? 1.0 : static_cast<double>(rows.size());
  std::vector<double> want(static_cast<size_t>(d * d), 0.0);
  for (int64_t r : rows) {
    for (int64_t a = 0; a < d; ++a) {
      const double centred = static_cast<double>(f[r * d + a]) - mean[a];
      for (int64_t c = 0; c < d; ++c) want[a * d + c] += centred * laplacian[r * d + c];
    }
  }
  // the kernel sums the upper triangle and mirrors it below the diagonal
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t c = 0; c < a; ++c) want[a * d + c] = want[c * d + a];
  }
  for (const char* narrow : {"1", ""}) {
    setenv("ACTIVERM_FAST_NARROW_VECTORS", narrow, 1);
    std::vector<double> workspace(static_cast<size_t>(n + d), std::nan(""));
    std::vector<double> out(static_cast<size_t>(d * d), std::nan(""));  // overwritten
    CpuKernels::fisher_product(feature_view(f, n, d), laplacian.data(), workspace.data(),
                               out.data(), nullptr);
    CHECK(same_bits(out, want));
  }
  unsetenv("ACTIVERM_FAST_NARROW_VECTORS");
}

template <class T, class I>
void laplacian_case(Rng& rng, int64_t n, int64_t d, const std::vector<I>& pairs, int weighting) {
  // weighting: 0 null (all ones), 1 random, 2 all zero
  const int64_t P = static_cast<int64_t>(pairs.size() / 2);
  std::vector<T> f = random_features<T>(rng, n * d);
  std::vector<double> w;
  if (weighting == 1) {
    for (int64_t k = 0; k < P; ++k) w.push_back(rng.uniform() * 2.0);
  } else if (weighting == 2) {
    w.assign(static_cast<size_t>(P), 0.0);
  }
  const double* wp = weighting == 0 ? nullptr : w.data();
  std::vector<double> out(static_cast<size_t>(n * d), std::nan(""));  // overwritten
  CpuKernels::fisher_matrix(feature_view(f, n, d), pair_view(pairs), wp, out.data(), nullptr);
  // Direct scatter.
  std::vector<double> want(static_cast<size_t>(n * d), 0.0);
  for (int64_t k = 0; k < P; ++k) {
    const double wk = wp ? wp[k] : 1.0;
    for (int64_t a = 0; a < d; ++a) {
      const double c = wk * (static_cast<double>(f[pairs[2 * k] * d + a]) -
                             static_cast<double>(f[pairs[2 * k + 1] * d + a]));
      want[pairs[2 * k] * d + a] += c;
      want[pairs[2 * k + 1] * d + a] -= c;
    }
  }
  for (int64_t i = 0; i < n * d; ++i) CHECK_CLOSE(out[i], want[i], 1e-13, 1e-13);
  if (weighting == 2 || P == 0) {
    for (int64_t i = 0; i < n * d; ++i) CHECK(out[i] == 0.0);
  }
  product_case(f, n, d, out);
  // Phi^T (L_w Phi) = sum_k w_k d_k d_k^T.
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t b = 0; b < d; ++b) {
      double got = 0.0;
      for (int64_t i = 0; i < n; ++i) got += static_cast<double>(f[i * d + a]) * out[i * d + b];
      double direct = 0.0, size = 0.0;
      for (int64_t k = 0; k < P; ++k) {
        const double wk = wp ? wp[k] : 1.0;
        const double da = static_cast<double>(f[pairs[2 * k] * d + a]) -
                          static_cast<double>(f[pairs[2 * k + 1] * d + a]);
        const double db = static_cast<double>(f[pairs[2 * k] * d + b]) -
                          static_cast<double>(f[pairs[2 * k + 1] * d + b]);
        direct += wk * da * db;
        size += std::fabs(wk * da * db);
      }
      CHECK_CLOSE(got, direct, 0.0, 1e-12 * (size + 1.0) * static_cast<double>(n));
    }
  }
}

template <class T, class I>
void test_fisher_matrix() {
  Rng rng(31);
  g_case = std::string(type_name<T>()) + "/" + index_name<I>();
  for (int weighting : {0, 1, 2}) {
    laplacian_case<T, I>(rng, 6, 3, random_pairs<I>(rng, 6, 14), weighting);
    laplacian_case<T, I>(rng, 2, 1, {0, 1}, weighting);                 // P = 1, n = 2, d = 1
    laplacian_case<T, I>(rng, 3, 70, all_pairs<I>(3), weighting);       // d > n, 3 col blocks
    laplacian_case<T, I>(rng, 5, 4, std::vector<I>{}, weighting);       // P = 0: out zeroed
    // the product's tiles and blocks at both widths, a chunk boundary crossed (256 rows)
    laplacian_case<T, I>(rng, 300, 37, random_pairs<I>(rng, 300, 900), weighting);
  }
}

// ---- greedy engine ------------------------------------------------------------------------

template <class T, class I>
Problem<T, I> random_problem(Rng& rng, int64_t n, int64_t d, int64_t members, bool shared,
                             std::vector<I> pairs, bool random_prior) {
  Problem<T, I> pr;
  pr.n = n;
  pr.d = d;
  pr.members = members;
  pr.shared = shared;
  pr.features = random_features<T>(rng, (shared ? 1 : members) * n * d);
  pr.pairs = std::move(pairs);
  pr.weights.resize(static_cast<size_t>(pr.count() * members));
  for (auto& w : pr.weights) w = 0.05 + rng.uniform();
  if (random_prior) pr.set_random_prior(rng, 0.3);
  else pr.set_ridge(0.5);
  return pr;
}

// Runs k steps from the problem's start with greedy_run and with the composition of the
// primitives (same bits: choices, gains, scores, factor, workspace), then checks the
// selection against float64. Returns the run's selection.
template <class T, class I>
Selection check_selection(const Problem<T, I>& pr, int64_t k, int64_t first_index = 0,
                          double rtol = 1e-9) {
  const GreedyProblem problem = pr.view(first_index);
  Engine ran(problem, pr.scores0, pr.factor0);
  const Selection a = run(problem, ran, k);
  Engine composed(problem, pr.scores0, pr.factor0);
  const Selection b = compose(problem, composed, k);
  CHECK(same_selection(a, b));
  CHECK(same_doubles(ran.scores, composed.scores));
  CHECK(same_bits(ran.factor, composed.factor));
  CHECK(same_bits(ran.workspace, composed.workspace));
  // The lazy sweep picks the same pairs with the same gains and leaves the same factor.
  Engine lazy(problem, pr.scores0, pr.factor0);
  CHECK(same_selection(run_lazy(problem, lazy, k), a));
  CHECK(same_bits(lazy.factor, ran.factor));
  // Distinct choices, every one inside this shard.
  for (int64_t t = 0; t < k; ++t) {
    if (a.chosen[t] < 0) continue;
    CHECK(a.chosen[t] >= first_index && a.chosen[t] < first_index + pr.count());
    for (int64_t u = 0; u < t; ++u) CHECK(a.chosen[u] != a.chosen[t]);
  }
  check_against_dense(pr, a, ran, first_index, rtol);
  // With the refresh check on at the tolerance Python uses, a well-conditioned problem never
  // stops for a refresh and selects the same bits.
  const GreedyProblem checked = pr.view(first_index, 0, -1, kRefreshTolerance);
  Engine refreshing(checked, pr.scores0, pr.factor0);
  CHECK(same_selection(run(checked, refreshing, k), a));
  CHECK(same_doubles(refreshing.scores, ran.scores));
  CHECK(same_bits(refreshing.factor, ran.factor));
  return a;
}

// A step whose chosen pair's running score disagrees with its fresh value stops the engine:
// that step and every later one record kRefreshChoice and NaN and touch no score and no factor;
// a run() from the same state (Python's refresh rewrites it, here it is kept) goes on exactly
// where the uninterrupted selection would.
template <class T, class I>
void check_refresh(const Problem<T, I>& pr, int64_t k) {
  const GreedyProblem plain = pr.view();
  Engine reference(plain, pr.scores0, pr.factor0);
  const Selection want = run(plain, reference, k);
  CHECK(k >= 3 && want.chosen[1] >= 0);

  const GreedyProblem problem = pr.view(0, 0, -1, kRefreshTolerance);
  Engine engine(problem, pr.scores0, pr.factor0);
  Selection got{std::vector<int64_t>(static_cast<size_t>(k), -7),
                std::vector<double>(static_cast<size_t>(k), -7.0)};
  CpuKernels::greedy_sweep(problem, engine.state(), false, nullptr);
  CpuKernels::greedy_apply(problem, engine.state(), 0, got.chosen.data(), got.gains.data(), true,
                           nullptr);
  CpuKernels::greedy_sweep(problem, engine.state(), true, nullptr);
  CHECK(got.chosen[0] == want.chosen[0] && same_double(got.gains[0], want.gains[0]));
  CHECK(engine.choice().index == want.chosen[1]);
  // The caller rewrites the record's running score (as a drifted downdate would have left it).
  const std::vector<double> scores = engine.scores;
  const std::vector<double> factor = engine.factor;
  engine.choice().score *= 1.0 + 1e-6;
  for (int64_t t = 1; t < k; ++t) {
    CpuKernels::greedy_apply(problem, engine.state(), t, got.chosen.data(), got.gains.data(),
                             t + 1 < k, nullptr);
    if (t + 1 < k) CpuKernels::greedy_sweep(problem, engine.state(), true, nullptr);
    CHECK(got.chosen[t] == activerm::kRefreshChoice);
    CHECK(std::isnan(got.gains[t]));
    CHECK(engine.choice().index == activerm::kRefreshChoice);
    CHECK(same_bits(engine.scores, scores));
    CHECK(same_bits(engine.factor, factor));
  }
  // Resume: run() starts with a plain sweep of the (already downdated) scores.
  const Selection rest = run(problem, engine, k - 1);
  for (int64_t t = 1; t < k; ++t) {
    CHECK(rest.chosen[t - 1] == want.chosen[t]);
    CHECK(same_double(rest.gains[t - 1], want.gains[t]));
  }
  CHECK(same_doubles(engine.scores, reference.scores));
  CHECK(same_bits(engine.factor, reference.factor));

  // A running score off from the start: the first step already stops, state untouched.
  Problem<T, I> off = pr;
  const int64_t E = pr.members;
  int64_t best = 0;
  double best_score = -1.0;
  for (int64_t p = 0; p < pr.count(); ++p) {
    double score = 0.0;
    for (int64_t e = 0; e < E; ++e) {
      const double x = pr.weights[p * E + e] * pr.scores0[p * E + e];
      score = e == 0 ? x : score + x + score * x;
    }
    if (score > best_score) best = p, best_score = score;
  }
  off.scores0[best * E] *= 2.0;
  const GreedyProblem stopped = off.view(0, 0, -1, kRefreshTolerance);
  Engine halted(stopped, off.scores0, off.factor0);
  const Selection none = run(stopped, halted, k);
  for (int64_t t = 0; t < k; ++t) {
    CHECK(none.chosen[t] == activerm::kRefreshChoice && std::isnan(none.gains[t]));
  }
  CHECK(same_bits(halted.scores, off.scores0));
  CHECK(same_bits(halted.factor, off.factor0));
  // Without the check the same pair is chosen, with its fresh (dense) gain.
  const GreedyProblem unchecked = off.view();
  Engine going(unchecked, off.scores0, off.factor0);
  const Selection first = run(unchecked, going, 1);
  CHECK(first.chosen[0] == best);
  double gain = 0.0;
  for (int64_t e = 0; e < E; ++e) {
    std::vector<double> fe(pr.prior.begin() + e * pr.d * pr.d,
                           pr.prior.begin() + (e + 1) * pr.d * pr.d), lower;
    const bool ok = cholesky(fe, pr.d, lower);
    CHECK(ok);
    const std::vector<double> diff = pr.difference(e, best);
    gain += std::log1p(pr.weights[best * E + e] * inverse_quadform(lower, pr.d, diff.data()));
  }
  CHECK_CLOSE(first.gains[0], gain, 1e-9, 0.0);
}

template <class T, class I>
void engine_suite(int64_t members, bool shared) {
  Rng rng(1000 + 10 * members + (shared ? 1 : 0) + (std::is_same<T, double>::value ? 100 : 0) +
          (std::is_same<I, int64_t>::value ? 200 : 0));
  const std::string tag = std::string(type_name<T>()) + "/" + index_name<I>() + " E=" +
                          std::to_string(members) + (shared ? " shared" : " stacked");
  const double rtol = std::is_same<T, double>::value ? 1e-9 : 1e-8;

  {  // a general case, ridge and random SPD priors
    for (bool random_prior : {false, true}) {
      g_case = tag + (random_prior ? " spd prior" : " ridge prior");
      auto pr = random_problem<T, I>(rng, 9, 4, members, shared, random_pairs<I>(rng, 9, 30),
                                     random_prior);
      pr.start();
      check_selection(pr, 12, 0, rtol);
    }
  }
  {  // P = 0: every step records -1 and NaN
    g_case = tag + " P=0";
    auto pr = random_problem<T, I>(rng, 4, 3, members, shared, std::vector<I>{}, false);
    pr.start();
    const Selection s = check_selection(pr, 3, 0, rtol);
    for (int64_t t = 0; t < 3; ++t) CHECK(s.chosen[t] == -1 && std::isnan(s.gains[t]));
  }
  {  // P = 1, k = 1 and k = 3
    g_case = tag + " P=1";
    auto pr = random_problem<T, I>(rng, 3, 2, members, shared, std::vector<I>{2, 0}, false);
    pr.start();
    const Selection one = check_selection(pr, 1, 0, rtol);
    CHECK(one.chosen[0] == 0);
    const Selection three = check_selection(pr, 3, 0, rtol);
    CHECK(three.chosen[0] == 0 && three.chosen[1] == -1 && three.chosen[2] == -1);
    CHECK(same_double(three.gains[0], one.gains[0]));
  }
  {  // n = 2, d = 1: the pair, its reverse and a duplicate
    g_case = tag + " n=2 d=1";
    auto pr = random_problem<T, I>(rng, 2, 1, members, shared, std::vector<I>{0, 1, 1, 0, 0, 1},
                                   false);
    pr.start();
    check_selection(pr, 3, 0, rtol);
    check_selection(pr, 5, 0, rtol);  // k > P
  }
  {  // d > n
    g_case = tag + " d>n";
    auto pr = random_problem<T, I>(rng, 3, 7, members, shared, all_pairs<I>(3), true);
    pr.start();
    check_selection(pr, 6, 0, rtol);
  }
  {  // masked pairs; k = available, k > available; one member's NaN masks the pair
    g_case = tag + " masked";
    auto pr = random_problem<T, I>(rng, 8, 3, members, shared, random_pairs<I>(rng, 8, 12),
                                   false);
    std::vector<bool> masked(12, false);
    masked[0] = masked[5] = masked[11] = true;
    pr.start(masked);
    if (members > 1) {  // pair 7: only its last member's score is NaN
      pr.scores0[7 * members + members - 1] = std::numeric_limits<double>::quiet_NaN();
    }
    const int64_t available = members > 1 ? 8 : 9;
    const Selection exact = check_selection(pr, available, 0, rtol);
    for (int64_t t = 0; t < available; ++t) CHECK(exact.chosen[t] >= 0);
    const Selection more = check_selection(pr, available + 4, 0, rtol);
    for (int64_t t = 0; t < available + 4; ++t) {
      CHECK((more.chosen[t] >= 0) == (t < available));
      if (more.chosen[t] >= 0) {
        CHECK(!masked[more.chosen[t]]);
        CHECK(members == 1 || more.chosen[t] != 7);
      }
    }
  }
  {  // all scores NaN: -1 and NaN, nothing touched
    g_case = tag + " all NaN";
    auto pr = random_problem<T, I>(rng, 5, 3, members, shared, random_pairs<I>(rng, 5, 6), false);
    pr.start(std::vector<bool>(6, true));
    const GreedyProblem problem = pr.view();
    Engine engine(problem, pr.scores0, pr.factor0);
    const Selection s = run(problem, engine, 4);
    for (int64_t t = 0; t < 4; ++t) CHECK(s.chosen[t] == -1 && std::isnan(s.gains[t]));
    CHECK(same_bits(engine.scores, pr.scores0));
    CHECK(same_bits(engine.factor, pr.factor0));
    CHECK(engine.choice().index == -1);
    // Apply of the empty choice with prepare_next touches no score and no factor either.
    std::vector<int64_t> chosen(1, 5);
    std::vector<double> gains(1, 5.0);
    CpuKernels::greedy_apply(problem, engine.state(), 0, chosen.data(), gains.data(), true,
                             nullptr);
    CHECK(chosen[0] == -1 && std::isnan(gains[0]));
    CHECK(same_bits(engine.scores, pr.scores0));
    CHECK(same_bits(engine.factor, pr.factor0));
    check_selection(pr, 2, 0, rtol);
  }
  {  // weights zero: every gain 0, the factor never moves, pairs in index order
    g_case = tag + " weights 0";
    auto pr = random_problem<T, I>(rng, 6, 3, members, shared, random_pairs<I>(rng, 6, 5), false);
    std::fill(pr.weights.begin(), pr.weights.end(), 0.0);
    pr.start();
    const GreedyProblem problem = pr.view();
    Engine engine(problem, pr.scores0, pr.factor0);
    const Selection s = run(problem, engine, 7);
    for (int64_t t = 0; t < 7; ++t) {
      CHECK(s.chosen[t] == (t < 5 ? t : -1));
      CHECK(t < 5 ? s.gains[t] == 0.0 : std::isnan(s.gains[t]));
    }
    CHECK(same_bits(engine.factor, pr.factor0));
    check_selection(pr, 7, 0, rtol);
  }
  {  // the refresh check stops the engine and leaves the state alone
    g_case = tag + " refresh";
    auto pr = random_problem<T, I>(rng, 8, 3, members, shared, random_pairs<I>(rng, 8, 16), true);
    pr.start();
    check_refresh(pr, 5);
  }
  {  // one member's weights zero (the others carry the choice)
    g_case = tag + " one member's weights 0";
    auto pr = random_problem<T, I>(rng, 7, 3, members, shared, random_pairs<I>(rng, 7, 15), true);
    for (int64_t k = 0; k < 15; ++k) pr.weights[k * members] = 0.0;
    pr.start();
    check_selection(pr, 8, 0, rtol);
  }
}

// Exact ties go to the lowest index, within a thread's chunk and across threads' chunks.
template <class T, class I>
void test_ties() {
  g_case = std::string(type_name<T>()) + "/" + index_name<I>();
  {  // three pairs tie, behind a weaker one; two of them are parallel, one orthogonal
    Problem<T, I> pr;
    pr.n = 4;
    pr.d = 2;
    pr.members = 3;
    pr.shared = true;
    pr.features = {T(1), T(0), T(0), T(0), T(0), T(1), T(0), T(0)};
    pr.pairs = {0, 1, 2, 3, 0, 3, 3, 2};  // d = (1, 0) weight 1/2, (0, 1), (1, 0), (0, -1)
    pr.weights.assign(12, 1.0);
    for (int64_t e = 0; e < 3; ++e) pr.weights[e] = 0.5;
    pr.set_ridge(1.0);
    pr.start();
    const Selection s = check_selection(pr, 4);
    // Pairs 1, 2 and 3 tie: 1 wins. Choosing it downdates its parallel pair 3 and leaves the
    // orthogonal pair 2 exactly as it was, so 2 is next with the very same gain.
    CHECK(s.chosen[0] == 1 && s.chosen[1] == 2 && s.chosen[2] == 3 && s.chosen[3] == 0);
    CHECK(same_double(s.gains[0], s.gains[1]));
  }
  {  // 100000 pairs, all tied, over several sweep chunks (and threads); shard offsets
    const int64_t P = 100000;
    Problem<T, I> pr;
    pr.n = 2;
    pr.d = 1;
    pr.features = {T(0.75), T(-0.25)};
    for (int64_t k = 0; k < P; ++k) {
      pr.pairs.push_back(static_cast<I>(k % 2));
      pr.pairs.push_back(static_cast<I>(1 - k % 2));
    }
    pr.weights.assign(static_cast<size_t>(P), 0.5);
    pr.set_ridge(0.5);
    std::vector<bool> masked(static_cast<size_t>(P), false);
    for (int64_t k = 0; k < 40000; ++k) masked[k] = true;
    masked[40002] = true;
    pr.start(masked);
    for (int64_t first_index : {int64_t{0}, int64_t{1234567}}) {
      const GreedyProblem problem = pr.view(first_index);
      Engine engine(problem, pr.scores0, pr.factor0);
      const Selection s = run(problem, engine, 4);
      CHECK(s.chosen[0] == first_index + 40000);
      CHECK(s.chosen[1] == first_index + 40001);
      CHECK(s.chosen[2] == first_index + 40003);
      CHECK(s.chosen[3] == first_index + 40004);
      Engine composed(problem, pr.scores0, pr.factor0);
      CHECK(same_selection(s, compose(problem, composed, 4)));
      CHECK(same_doubles(engine.scores, composed.scores));
    }
  }
}

// A pool split into shards with their own state; each step every shard sweeps, the caller
// copies the best shard's choice into every shard's record and every shard applies it. The
// result must be the single-process run's, bit for bit; a shard masks only its own pairs.
template <class T, class I>
void test_shards() {
  Rng rng(77);
  for (int64_t members : {int64_t{1}, int64_t{3}}) {
    g_case = std::string(type_name<T>()) + "/" + index_name<I>() + " E=" + std::to_string(members);
    auto pr = random_problem<T, I>(rng, 10, 3, members, false, random_pairs<I>(rng, 10, 40), true);
    std::vector<bool> masked(40, false);
    masked[3] = masked[20] = true;
    pr.start(masked);
    const int64_t k = 42;  // beyond the 38 available: the tail is -1
    const GreedyProblem whole = pr.view();
    Engine single(whole, pr.scores0, pr.factor0);
    const Selection want = run(whole, single, k);

    const int64_t cuts[] = {0, 17, 17, 40};  // the middle shard is empty
    std::vector<GreedyProblem> shards;
    std::vector<Engine> engines;
    for (int s = 0; s < 3; ++s) {
      shards.push_back(pr.view(cuts[s], cuts[s], cuts[s + 1]));
      std::vector<double> scores(pr.scores0.begin() + cuts[s] * members,
                                 pr.scores0.begin() + cuts[s + 1] * members);
      engines.emplace_back(shards[s], scores, pr.factor0);
    }
    Selection got{std::vector<int64_t>(static_cast<size_t>(k), -7),
                  std::vector<double>(static_cast<size_t>(k), -7.0)};
    for (int s = 0; s < 3; ++s) {
      CpuKernels::greedy_sweep(shards[s], engines[s].state(), false, nullptr);
    }
    for (int64_t t = 0; t < k; ++t) {
      int winner = 0;
      for (int s = 1; s < 3; ++s) {
        const GreedyChoice& c = engines[s].choice();
        const GreedyChoice& w = engines[winner].choice();
        if (c.index >= 0 && (w.index < 0 || c.score > w.score ||
                             (c.score == w.score && c.index < w.index))) {
          winner = s;
        }
      }
      const GreedyChoice record = engines[winner].choice();
      if (record.index >= 0) {
        CHECK(record.index >= cuts[winner] && record.index < cuts[winner + 1]);
      }
      std::vector<int64_t> nan_before(3);
      for (int s = 0; s < 3; ++s) {
        engines[s].choice() = record;
        nan_before[s] = std::count_if(engines[s].scores.begin(), engines[s].scores.end(),
                                      [](double v) { return std::isnan(v); });
      }
      const bool prepare_next = t + 1 < k;
      for (int s = 0; s < 3; ++s) {
        std::vector<int64_t> chosen(static_cast<size_t>(k), -7);
        std::vector<double> gains(static_cast<size_t>(k), -7.0);
        CpuKernels::greedy_apply(shards[s], engines[s].state(), t, chosen.data(), gains.data(),
                                 prepare_next, nullptr);
        CHECK(chosen[t] == record.index);
        if (s == 0) {
          got.chosen[t] = chosen[t];
          got.gains[t] = gains[t];
        } else {
          CHECK(same_double(gains[t], got.gains[t]));
        }
        const int64_t nan_after =
            std::count_if(engines[s].scores.begin(), engines[s].scores.end(),
                          [](double v) { return std::isnan(v); });
        const bool owner = record.index >= cuts[s] && record.index < cuts[s + 1];
        CHECK(nan_after == nan_before[s] + (owner ? members : 0));
      }
      if (got.chosen[t] < 0) {  // nothing left anywhere: the caller stops, as run() does
        for (int64_t rest = t + 1; rest < k; ++rest) {
          got.chosen[rest] = -1;
          got.gains[rest] = std::numeric_limits<double>::quiet_NaN();
        }
        break;
      }
      if (prepare_next) {
        for (int s = 0; s < 3; ++s) {
          CpuKernels::greedy_sweep(shards[s], engines[s].state(), true, nullptr);
          if (engines[s].choice().index >= 0) {
            CHECK(engines[s].choice().index >= cuts[s] &&
                  engines[s].choice().index < cuts[s + 1]);
          }
        }
      }
    }
    CHECK(same_selection(got, want));
    for (int64_t t = 0; t < k; ++t) CHECK((got.chosen[t] >= 0) == (t < 38));
    std::vector<double> joined;
    for (int s = 0; s < 3; ++s) {
      joined.insert(joined.end(), engines[s].scores.begin(), engines[s].scores.end());
      CHECK(same_bits(engines[s].factor, single.factor));
    }
    CHECK(same_doubles(joined, single.scores));
    check_against_dense(pr, want, single);

    // One shard run alone with first_index > 0 selects like the same pairs at offset 0.
    const GreedyProblem tail0 = pr.view(0, 17, 40);
    const GreedyProblem tail = pr.view(1000, 17, 40);
    std::vector<double> scores(pr.scores0.begin() + 17 * members, pr.scores0.end());
    Engine at0(tail0, scores, pr.factor0), at1000(tail, scores, pr.factor0);
    const Selection s0 = run(tail0, at0, 25), s1 = run(tail, at1000, 25);
    for (int64_t t = 0; t < 25; ++t) {
      CHECK(s1.chosen[t] == (s0.chosen[t] < 0 ? -1 : s0.chosen[t] + 1000));
      CHECK(same_double(s0.gains[t], s1.gains[t]));
    }
    CHECK(same_doubles(at0.scores, at1000.scores));
  }
}

// Features of extreme magnitude with the matching power-of-two scale select exactly as the
// same features at magnitude 1 (Python's feature_scale brings the largest into [1/2, 1)).
template <class T, class I>
void test_extreme_magnitudes() {
  Rng rng(91);
  const int big = std::is_same<T, double>::value ? 997 : 100;  // ~1e300 / ~1e30
  for (int64_t members : {int64_t{1}, int64_t{3}}) {
    for (bool shared : {false, true}) {
      auto base = random_problem<T, I>(rng, 8, 3, members, shared, random_pairs<I>(rng, 8, 20),
                                       true);
      // Into [1/2, 1) as feature_scale leaves them, then out to the extremes.
      T top = 0;
      for (T v : base.features) top = std::max(top, static_cast<T>(std::fabs(v)));
      int exponent = 0;
      std::frexp(static_cast<double>(top), &exponent);
      for (auto& v : base.features) v = std::ldexp(v, -exponent);
      base.start();
      const Selection want = check_selection(base, 10);
      Engine base_engine(base.view(), base.scores0, base.factor0);
      run(base.view(), base_engine, 10);
      for (int power : {big, -big, 7}) {
        g_case = std::string(type_name<T>()) + "/" + index_name<I>() + " E=" +
                 std::to_string(members) + (shared ? " shared" : " stacked") + " 2^" +
                 std::to_string(power);
        Problem<T, I> pr = base;
        for (auto& v : pr.features) v = std::ldexp(v, power);
        pr.scale = std::ldexp(1.0, -power);
        pr.start();
        CHECK(same_bits(pr.scores0, base.scores0));
        CHECK(same_bits(pr.factor0, base.factor0));
        const Selection got = check_selection(pr, 10);
        CHECK(same_selection(got, want));
        Engine engine(pr.view(), pr.scores0, pr.factor0);
        run(pr.view(), engine, 10);
        // The factor does not see the scale; the scores are downdated through the
        // projections v = Phi (scale u), which must round like the unscaled problem's.
        CHECK(same_bits(engine.factor, base_engine.factor));
        CHECK(same_doubles(engine.scores, base_engine.scores));
      }
    }
  }
}

// A selection small enough for OpenMP to run every phase on one thread, with the one-member
// sweep in vectors (P = 6000, 30000) and the float32 and float64 panel products: with one
// thread and with two, and step by step through the primitives, the same bits.
template <class T>
void check_small_selection(Rng& rng, int64_t n, int64_t d, int64_t P, int64_t members) {
  g_case = std::string(sizeof(T) == 4 ? "f32" : "f64") + " n=" + std::to_string(n) +
           " d=" + std::to_string(d) + " P=" + std::to_string(P) + " E=" +
           std::to_string(members);
  Problem<T, int32_t> pr;
  pr.n = n;
  pr.d = d;
  pr.members = members;
  pr.features = random_features<T>(rng, members * n * d);
  pr.pairs = random_pairs<int32_t>(rng, n, P);
  pr.weights.resize(static_cast<size_t>(P * members));
  for (auto& w : pr.weights) w = 0.05 + rng.uniform();
  pr.set_random_prior(rng, 0.3);
  pr.start();
  const int64_t k = 40;
  const GreedyProblem problem = pr.view();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  Engine one(problem, pr.scores0, pr.factor0);
  const Selection a = run(problem, one, k);
  omp_set_num_threads(std::max(2, threads));
  Engine two(problem, pr.scores0, pr.factor0);
  const Selection b = run(problem, two, k);
  Engine composed(problem, pr.scores0, pr.factor0);
  const Selection c = compose(problem, composed, k);
  omp_set_num_threads(threads);
  CHECK(same_selection(a, b));
  CHECK(same_selection(a, c));
  CHECK(same_doubles(one.scores, two.scores));
  CHECK(same_bits(one.factor, two.factor));
  CHECK(same_bits(one.workspace, two.workspace));
  CHECK(same_doubles(one.scores, composed.scores));
}

void test_small_selections() {
  Rng rng(11);
  check_small_selection<float>(rng, 1500, 48, 6000, 1);
  check_small_selection<double>(rng, 1500, 48, 6000, 1);
  check_small_selection<float>(rng, 700, 24, 30000, 1);
  check_small_selection<float>(rng, 800, 40, 5000, 3);
}

// Sizes where the engine's parallel paths switch on (d >= 512, n d >= 2^18, several sweep
// chunks): one thread and several give the same bits; the gains match a dense solve.
void test_parallel_paths() {
  Rng rng(5);
  const int64_t n = 603, d = 515, P = 70000;
  for (int64_t members : {int64_t{1}, int64_t{2}}) {
    g_case = "f32/i32 n=603 d=515 P=70000 E=" + std::to_string(members);
    Problem<float, int32_t> pr;
    pr.n = n;
    pr.d = d;
    pr.members = members;
    pr.features = random_features<float>(rng, members * n * d);
    pr.pairs = random_pairs<int32_t>(rng, n, P);
    pr.weights.resize(static_cast<size_t>(P * members));
    for (auto& w : pr.weights) w = 0.05 + rng.uniform();
    pr.set_ridge(2.0);
    // Scores straight from the ridge (S0 diagonal): pair_quadform as Python computes them.
    pr.factor0.assign(static_cast<size_t>(members * d * d), 0.0);
    pr.scores0.assign(static_cast<size_t>(P * members), 0.0);
    for (int64_t e = 0; e < members; ++e) {
      const double ridge = pr.prior[e * d * d];
      const double root = 1.0 / std::sqrt(ridge);
      for (int64_t a = 0; a < d; ++a) pr.factor0[e * d * d + a * d + a] = root;
      std::vector<double> q(static_cast<size_t>(P));
      FeatureView fv{pr.features.data() + e * n * d, false, n, d, 1.0};
      CpuKernels::pair_quadform(fv, pair_view(pr.pairs), nullptr, root * root, q.data(),
                                nullptr);
      for (int64_t k = 0; k < P; ++k) pr.scores0[k * members + e] = q[k];
    }
    const int64_t k = 4;
    const GreedyProblem problem = pr.view();
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Engine one(problem, pr.scores0, pr.factor0);
    const Selection a = run(problem, one, k);
    omp_set_num_threads(std::max(2, threads));
    Engine many(problem, pr.scores0, pr.factor0);
    const Selection b = run(problem, many, k);
    Engine composed(problem, pr.scores0, pr.factor0);
    const Selection c = compose(problem, composed, k);
    omp_set_num_threads(threads);
    CHECK(same_selection(a, b));
    CHECK(same_selection(a, c));
    CHECK(same_doubles(one.scores, many.scores));
    CHECK(same_bits(one.factor, many.factor));
    CHECK(same_doubles(one.scores, composed.scores));
    // The lazy sweep with many threads, on equal weights too: then thousands of pairs share a
    // bucket, so its parallel refresh and relocation run.
    Problem<float, int32_t> flat = pr;
    std::fill(flat.weights.begin(), flat.weights.end(), 0.25);
    const GreedyProblem flat_problem = flat.view();
    Engine flat_dense(flat_problem, flat.scores0, flat.factor0);
    const Selection fd = run(flat_problem, flat_dense, 3 * k);
    omp_set_num_threads(std::max(2, threads));
    Engine lazy(problem, pr.scores0, pr.factor0);
    const Selection l = run_lazy(problem, lazy, k);
    Engine flat_lazy(flat_problem, flat.scores0, flat.factor0);
    const Selection fl = run_lazy(flat_problem, flat_lazy, 3 * k);
    omp_set_num_threads(threads);
    CHECK(same_selection(a, l));
    CHECK(same_selection(fd, fl));
    // Gains against a dense solve along the chosen path.
    std::vector<double> F = pr.prior;
    for (int64_t t = 0; t < k; ++t) {
      CHECK(a.chosen[t] >= 0 && a.chosen[t] < P);
      if (a.chosen[t] < 0) return;
      if (t > 0) CHECK(a.gains[t] <= a.gains[t - 1] * (1.0 + 1e-9));
      double gain = 0.0;
      for (int64_t e = 0; e < members; ++e) {
        std::vector<double> fe(F.begin() + e * d * d, F.begin() + (e + 1) * d * d), lower;
        const bool ok = cholesky(fe, d, lower);
        CHECK(ok);
        const std::vector<double> diff = pr.difference(e, a.chosen[t]);
        const double w = pr.weights[a.chosen[t] * members + e];
        gain += std::log1p(w * inverse_quadform(lower, d, diff.data()));
        for (int64_t x = 0; x < d; ++x) {
          for (int64_t y = 0; y < d; ++y) F[e * d * d + x * d + y] += w * diff[x] * diff[y];
        }
      }
      CHECK_CLOSE(a.gains[t], gain, 1e-9, 0.0);
    }
  }
}

// No weights (a null pointer): every weight 1, the same bits as a stored array of ones, for
// one member and for several; the lazy sweep, which copies weights, refuses it.
template <class T, class I>
void test_unit_weights() {
  g_case = std::string(type_name<T>()) + "/" + index_name<I>();
  Rng rng(11);
  for (int64_t members : {int64_t{1}, int64_t{3}}) {
    auto pr = random_problem<T, I>(rng, 40, 6, members, false, random_pairs<I>(rng, 40, 500),
                                   members > 1);
    pr.weights.assign(pr.weights.size(), 1.0);
    pr.start();
    const GreedyProblem stored = pr.view();
    GreedyProblem unit = stored;
    unit.weights = nullptr;
    Engine a(stored, pr.scores0, pr.factor0);
    Engine b(unit, pr.scores0, pr.factor0);
    CHECK(same_selection(run(stored, a, 25), run(unit, b, 25)));
    CHECK(same_doubles(a.scores, b.scores));
    CHECK(same_bits(a.factor, b.factor));
    CHECK(!LazyGreedyCpu::supports(unit) && LazyGreedyCpu::supports(stored));
  }
}

// E = kMaxMembers members: the choice record's weights fill up exactly.
void test_max_members() {
  Rng rng(3);
  g_case = "f64/i64 E=64";
  auto pr = random_problem<double, int64_t>(rng, 5, 2, activerm::kMaxMembers, true,
                                            random_pairs<int64_t>(rng, 5, 8), false);
  pr.start();
  check_selection(pr, 9);
}

// k = 0 writes nothing (null outputs).
void test_zero_steps() {
  Rng rng(4);
  g_case = "k=0";
  auto pr = random_problem<double, int32_t>(rng, 4, 2, 1, true, random_pairs<int32_t>(rng, 4, 3),
                                            false);
  pr.start();
  const GreedyProblem problem = pr.view();
  Engine engine(problem, pr.scores0, pr.factor0);
  CpuKernels::greedy_run(problem, engine.state(), 0, nullptr, nullptr, nullptr);
  CHECK(same_bits(engine.scores, pr.scores0));
  CHECK(same_bits(engine.factor, pr.factor0));
}

// The workspace layout: the choice record first, then E, 1 + E, 3 E d and n E doubles, then the
// CPU engine's 64-byte header (the part that must start zeroed; no feature panels at these
// sizes).
void test_workspace_bytes() {
  g_case = "layout";
  for (int64_t members : {int64_t{1}, int64_t{3}, activerm::kMaxMembers}) {
    for (int64_t n : {int64_t{0}, int64_t{2}, int64_t{7}}) {
      for (int64_t d : {int64_t{1}, int64_t{5}}) {
        GreedyProblem problem{FeatureView{nullptr, true, n, d, 1.0}, members, 0,
                              PairView{nullptr, false, 0}, nullptr, 0, 0.0};
        const int64_t want = static_cast<int64_t>(sizeof(GreedyChoice)) +
                             8 * (members + 1 + members + 3 * members * d + n * members) + 64;
        CHECK(CpuKernels::greedy_workspace_bytes(problem) == want);
        CHECK(CpuKernels::greedy_zeroed_bytes(problem) == want);
      }
    }
  }
}

template <class Fn>
void for_types(Fn&& fn) {
  fn(double{}, int32_t{});
  fn(double{}, int64_t{});
  fn(float{}, int32_t{});
  fn(float{}, int64_t{});
}

struct Test {
  const char* name;
  std::function<void()> body;
};

}  // namespace

// ---- project_features (feature_projection_cpu.h) -----------------------------------------

// (scale Phi) M against the in-order float64 sum of every entry, written here (the same values:
// the kernel leaves out terms of zeros only), on one thread and on two (the same bits), the
// output exactly n m doubles.
template <class T>
void projection_case(Rng& rng, int64_t n, int64_t d, int64_t m, int zeros, double scale) {
  g_case = std::string(type_name<T>()) + " n=" + std::to_string(n) + " d=" + std::to_string(d) +
           " m=" + std::to_string(m) + " zeros=" + std::to_string(zeros);
  std::vector<T> f = random_features<T>(rng, n * d);
  std::vector<double> matrix(static_cast<size_t>(d * m));
  for (int64_t a = 0; a < d; ++a) {
    for (int64_t c = 0; c < m; ++c) {
      // 0: full; 1: upper triangular; 2: lower; 3: a zero block of columns 16..31 and row d / 2
      const bool zero = (zeros == 1 && a > c) || (zeros == 2 && a < c) ||
                        (zeros == 3 && (c / 16 == 1 || a == d / 2));
      matrix[a * m + c] = zero ? 0.0 : rng.symmetric();
    }
  }
  std::vector<double> want(static_cast<size_t>(n * m), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < m; ++c) {
      double acc = 0.0;
      for (int64_t a = 0; a < d; ++a) {
        acc += (static_cast<double>(f[r * d + a]) * scale) * matrix[a * m + c];
      }
      want[r * m + c] = acc;
    }
  }
  const int threads = omp_get_max_threads();
  std::vector<std::vector<double>> got;
  for (int team : {1, std::max(2, threads)}) {
    omp_set_num_threads(team);
    std::vector<double> out(static_cast<size_t>(n * m));
    activerm::project_features_cpu(feature_view(f, n, d, scale), matrix.data(), m, out.data());
    got.push_back(out);
  }
  omp_set_num_threads(threads);
  CHECK(same_doubles(got[0], got[1]));
  for (size_t e = 0; e < want.size(); ++e) CHECK(got[0][e] == want[e]);
}

template <class T>
void test_project_features() {
  if (!activerm::wide_vectors()) {
    std::printf("  (project_features: no AVX-512 here, the launcher takes torch's product)\n");
    return;
  }
  Rng rng(31);
  for (int zeros : {0, 1, 2, 3}) {
    projection_case<T>(rng, 1, 1, 1, zeros, 1.0);
    projection_case<T>(rng, 7, 5, 3, zeros, 0.5);      // fewer rows than a tile, lanes masked
    projection_case<T>(rng, 9, 17, 17, zeros, 2.0);    // a tile and a row, 16 columns and one
    projection_case<T>(rng, 33, 40, 48, zeros, 1.0);   // three blocks, the middle one zero (3)
    projection_case<T>(rng, 2100, 64, 64, zeros, 1.0); // past the one-shot bound: a team
  }
  projection_case<T>(rng, 5, 0, 4, 0, 1.0);  // d = 0: zeros, no feature read
}

// ---- the per-prompt quota (views.h: PromptQuota) ------------------------------------------

// The CSR index of pairs [0, count) by prompt, each prompt's counts at 0.
struct QuotaIndex {
  int64_t limit = 0;
  std::vector<int64_t> prompt_of, offsets, members, used;

  template <class I>
  QuotaIndex(int64_t limit_, std::vector<int64_t> prompt_of_, int64_t prompts, const I* pairs,
             int64_t count)
      : limit(limit_), prompt_of(std::move(prompt_of_)) {
    std::vector<std::vector<int64_t>> lists(static_cast<size_t>(prompts));
    for (int64_t k = 0; k < count; ++k) {
      const int64_t a = prompt_of[static_cast<size_t>(pairs[2 * k])];
      const int64_t b = prompt_of[static_cast<size_t>(pairs[2 * k + 1])];
      lists[a].push_back(k);
      if (b != a) lists[b].push_back(k);
    }
    offsets.push_back(0);
    for (const auto& list : lists) {
      members.insert(members.end(), list.begin(), list.end());
      offsets.push_back(static_cast<int64_t>(members.size()));
    }
    used.assign(static_cast<size_t>(prompts), 0);
  }
  PromptQuota view() {
    return PromptQuota{limit, static_cast<int64_t>(used.size()), prompt_of.data(),
                       offsets.data(), members.data(), used.data()};
  }
};

// The engine without a quota, the pairs of a full prompt masked by hand after every apply: what
// the quota must reproduce bit for bit.
template <class T, class I>
Selection masked_by_hand(const Problem<T, I>& pr, const std::vector<int64_t>& prompt_of,
                         int64_t prompts, int64_t limit, int64_t k) {
  const GreedyProblem problem = pr.view();
  Engine engine(problem, pr.scores0, pr.factor0);
  Selection s{std::vector<int64_t>(static_cast<size_t>(k), -7),
              std::vector<double>(static_cast<size_t>(k), -7.0)};
  std::vector<int64_t> used(static_cast<size_t>(prompts), 0);
  CpuKernels::greedy_sweep(problem, engine.state(), false, nullptr);
  for (int64_t t = 0; t < k; ++t) {
    const bool prepare_next = t + 1 < k;
    CpuKernels::greedy_apply(problem, engine.state(), t, s.chosen.data(), s.gains.data(),
                             prepare_next, nullptr);
    const int64_t c = s.chosen[t];
    if (c >= 0) {
      std::vector<int64_t> touched = {prompt_of[pr.first(c)], prompt_of[pr.second(c)]};
      if (touched[0] == touched[1]) touched.pop_back();
      for (int64_t prompt : touched) {
        if (++used[prompt] != limit) continue;
        for (int64_t q = 0; q < pr.count(); ++q) {
          if (prompt_of[pr.first(q)] == prompt || prompt_of[pr.second(q)] == prompt) {
            for (int64_t e = 0; e < pr.members; ++e) {
              engine.scores[q * pr.members + e] = std::numeric_limits<double>::quiet_NaN();
            }
          }
        }
      }
    }
    if (prepare_next) CpuKernels::greedy_sweep(problem, engine.state(), true, nullptr);
  }
  return s;
}

// The quota on the dense run, the composed primitives, the lazy sweep and three shards (one
// empty, each with its own index and counts): the same bits as masking by hand; no prompt
// beyond its limit; once nothing fits, -1 and NaN. Edge cases: a prompt with no responses (an
// empty CSR range), a limit no selection reaches, a single prompt, no pairs at all.
template <class T, class I>
void test_quota() {
  Rng rng(91);
  const int64_t n = 12;
  const int64_t prompts = 5;  // prompt 4 answers nothing
  std::vector<int64_t> prompt_of(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) prompt_of[r] = r / 3;
  for (int64_t members : {int64_t{1}, int64_t{3}}) {
    for (int64_t limit : {int64_t{1}, int64_t{2}, int64_t{1000}}) {
      g_case = std::string(type_name<T>()) + "/" + index_name<I>() +
               " E=" + std::to_string(members) + " limit=" + std::to_string(limit);
      auto pr = random_problem<T, I>(rng, n, 4, members, false, all_pairs<I>(n), true);
      std::vector<bool> masked(static_cast<size_t>(pr.count()), false);
      masked[5] = masked[40] = true;
      pr.start(masked);
      const int64_t k = 30;
      const Selection want = masked_by_hand(pr, prompt_of, prompts, limit, k);
      GreedyProblem problem = pr.view();
      QuotaIndex dense_index(limit, prompt_of, prompts, pr.pairs.data(), pr.count());
      problem.quota = dense_index.view();
      Engine dense(problem, pr.scores0, pr.factor0);
      const Selection got = run(problem, dense, k);
      CHECK(same_selection(got, want));
      // counts: never beyond the limit; the index's counts are the chosen pairs'
      std::vector<int64_t> counted(static_cast<size_t>(prompts), 0);
      bool ended = false;
      for (int64_t t = 0; t < k; ++t) {
        const int64_t c = got.chosen[t];
        if (c < 0) {
          ended = true;
          CHECK(c == -1 && std::isnan(got.gains[t]));
          continue;
        }
        CHECK(!ended);
        ++counted[prompt_of[pr.first(c)]];
        if (prompt_of[pr.second(c)] != prompt_of[pr.first(c)]) ++counted[prompt_of[pr.second(c)]];
      }
      for (int64_t p = 0; p < prompts; ++p) {
        CHECK(counted[p] <= limit);
        CHECK(counted[p] == dense_index.used[p]);
      }
      CHECK(counted[prompts - 1] == 0);
      if (limit < 1000) CHECK(ended);  // 4 prompts fill up before 30 picks
      // the composed primitives and the lazy sweep
      QuotaIndex composed_index(limit, prompt_of, prompts, pr.pairs.data(), pr.count());
      problem.quota = composed_index.view();
      Engine composed(problem, pr.scores0, pr.factor0);
      CHECK(same_selection(compose(problem, composed, k), want));
      CHECK(same_doubles(dense.scores, composed.scores));
      QuotaIndex lazy_index(limit, prompt_of, prompts, pr.pairs.data(), pr.count());
      problem.quota = lazy_index.view();
      Engine lazy(problem, pr.scores0, pr.factor0);
      CHECK(same_selection(run_lazy(problem, lazy, k), want));
      CHECK(lazy_index.used == dense_index.used);
      // three shards, the middle one empty, each masking its own pairs of a full prompt
      const int64_t cuts[] = {0, 23, 23, pr.count()};
      std::vector<GreedyProblem> shards;
      std::vector<QuotaIndex> indices;
      std::vector<Engine> engines;
      indices.reserve(3);
      for (int s = 0; s < 3; ++s) {
        shards.push_back(pr.view(cuts[s], cuts[s], cuts[s + 1]));
        indices.emplace_back(limit, prompt_of, prompts, pr.pairs.data() + 2 * cuts[s],
                             cuts[s + 1] - cuts[s]);
        std::vector<double> scores(pr.scores0.begin() + cuts[s] * members,
                                   pr.scores0.begin() + cuts[s + 1] * members);
        engines.emplace_back(shards[s], scores, pr.factor0);
      }
      for (int s = 0; s < 3; ++s) shards[s].quota = indices[s].view();
      for (int s = 0; s < 3; ++s) {
        CpuKernels::greedy_sweep(shards[s], engines[s].state(), false, nullptr);
      }
      Selection sharded{std::vector<int64_t>(static_cast<size_t>(k), -7),
                        std::vector<double>(static_cast<size_t>(k), -7.0)};
      for (int64_t t = 0; t < k; ++t) {
        int winner = 0;
        for (int s = 1; s < 3; ++s) {
          const GreedyChoice& c = engines[s].choice();
          const GreedyChoice& w = engines[winner].choice();
          if (c.index >= 0 && (w.index < 0 || c.score > w.score ||
                               (c.score == w.score && c.index < w.index))) {
            winner = s;
          }
        }
        const GreedyChoice record = engines[winner].choice();
        const bool prepare_next = t + 1 < k;
        for (int s = 0; s < 3; ++s) {
          engines[s].choice() = record;
          std::vector<int64_t> chosen(static_cast<size_t>(k), -7);
          std::vector<double> gains(static_cast<size_t>(k), -7.0);
          CpuKernels::greedy_apply(shards[s], engines[s].state(), t, chosen.data(), gains.data(),
                                   prepare_next, nullptr);
          if (s == 0) {
            sharded.chosen[t] = chosen[t];
            sharded.gains[t] = gains[t];
          }
        }
        if (prepare_next) {
          for (int s = 0; s < 3; ++s) {
            CpuKernels::greedy_sweep(shards[s], engines[s].state(), true, nullptr);
          }
        }
      }
      CHECK(same_selection(sharded, want));
      for (int s = 0; s < 3; ++s) CHECK(indices[s].used == dense_index.used);
    }
  }
  {  // one prompt: its first pick fills it, every later step is -1
    g_case = std::string(type_name<T>()) + "/" + index_name<I>() + " one prompt";
    auto pr = random_problem<T, I>(rng, 4, 3, 1, false, all_pairs<I>(4), false);
    pr.start();
    GreedyProblem problem = pr.view();
    QuotaIndex index(1, std::vector<int64_t>(4, 0), 1, pr.pairs.data(), pr.count());
    problem.quota = index.view();
    Engine engine(problem, pr.scores0, pr.factor0);
    const Selection s = run(problem, engine, 3);
    CHECK(s.chosen[0] >= 0 && s.chosen[1] == -1 && s.chosen[2] == -1);
    CHECK(index.used[0] == 1);
    for (double q : engine.scores) CHECK(std::isnan(q));
  }
  {  // no pairs: nothing to choose, nothing counted, empty index arrays
    g_case = std::string(type_name<T>()) + "/" + index_name<I>() + " no pairs";
    Problem<T, I> pr = random_problem<T, I>(rng, 3, 2, 1, false, {}, false);
    pr.start();
    GreedyProblem problem = pr.view();
    QuotaIndex index(1, {0, 1, 1}, 2, pr.pairs.data(), 0);
    problem.quota = index.view();
    Engine engine(problem, pr.scores0, pr.factor0);
    const Selection s = run(problem, engine, 2);
    CHECK(s.chosen[0] == -1 && s.chosen[1] == -1);
    CHECK(index.used[0] == 0 && index.used[1] == 0);
  }
}

int main(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  const std::vector<Test> tests = {
      {"pair_diff", [] { for_types([](auto t, auto i) { test_pair_diff<decltype(t), decltype(i)>(); }); }},
      {"fisher_weights", [] { for_types([](auto t, auto i) { test_fisher_weights<decltype(t), decltype(i)>(); }); }},
      {"pair_quadform", [] { for_types([](auto t, auto i) { test_pair_quadform<decltype(t), decltype(i)>(); }); }},
      {"fisher_matrix", [] { for_types([](auto t, auto i) { test_fisher_matrix<decltype(t), decltype(i)>(); }); }},
      {"project_features", [] { test_project_features<float>(); test_project_features<double>(); }},
      {"greedy_workspace_bytes", test_workspace_bytes},
      {"greedy_k0", test_zero_steps},
      {"greedy_single", [] { for_types([](auto t, auto i) { engine_suite<decltype(t), decltype(i)>(1, false); }); }},
      {"greedy_ensemble_stacked", [] { for_types([](auto t, auto i) { engine_suite<decltype(t), decltype(i)>(3, false); }); }},
      {"greedy_ensemble_shared", [] { for_types([](auto t, auto i) { engine_suite<decltype(t), decltype(i)>(3, true); }); }},
      {"greedy_ties", [] { for_types([](auto t, auto i) { test_ties<decltype(t), decltype(i)>(); }); }},
      {"greedy_shards", [] { for_types([](auto t, auto i) { test_shards<decltype(t), decltype(i)>(); }); }},
      {"greedy_extreme_magnitudes", [] { for_types([](auto t, auto i) { test_extreme_magnitudes<decltype(t), decltype(i)>(); }); }},
      {"greedy_max_members", test_max_members},
      {"greedy_parallel_paths", test_parallel_paths},
      {"greedy_small_selections", test_small_selections},
      {"greedy_quota", [] { for_types([](auto t, auto i) { test_quota<decltype(t), decltype(i)>(); }); }},
      {"greedy_unit_weights", [] { for_types([](auto t, auto i) { test_unit_weights<decltype(t), decltype(i)>(); }); }},
  };
  std::printf("kernel_edge_cases: %d OpenMP threads\n", omp_get_max_threads());
  int ran = 0;
  for (const Test& test : tests) {
    if (!filter.empty() && std::string(test.name).find(filter) == std::string::npos) continue;
    g_test = test.name;
    g_case.clear();
    const int before = g_failures;
    const auto start = std::chrono::steady_clock::now();
    test.body();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%-28s %s (%.2f s)\n", test.name, g_failures == before ? "ok" : "FAILED",
                seconds);
    std::fflush(stdout);
    ++ran;
  }
  if (ran == 0) {
    std::fprintf(stderr, "no test matches '%s'\n", filter.c_str());
    return 1;
  }
  std::printf("%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
