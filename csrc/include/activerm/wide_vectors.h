// AVX-512 forms of CPU vector loops, chosen at run time. The package is built for any x86-64
// (two doubles a vector); a loop compiled a second time with ACTIVERM_WIDE runs eight where the
// CPU has AVX-512. Lane by lane a product and a sum are the scalar ones, rounded the same
// (contraction into FMA is off everywhere), so both forms give the same bits.
#pragma once

#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace activerm {

#if defined(__x86_64__) && defined(__GNUC__)
#define ACTIVERM_WIDE_VECTORS 1
#define ACTIVERM_WIDE __attribute__((target("avx512f")))
#endif

// Whether to run the AVX-512 forms: where the CPU has AVX-512F, unless
// ACTIVERM_FAST_NARROW_VECTORS is set to anything but 0 or empty (the tests run both forms).
// Asked once per call of the Fisher product and of pair_quadform, and once per greedy engine
// (when it builds its panels), never per step or per pair.
inline bool wide_vectors() {
#ifdef ACTIVERM_WIDE_VECTORS
  const char* narrow = std::getenv("ACTIVERM_FAST_NARROW_VECTORS");
  if (narrow != nullptr && *narrow != '\0' && std::strcmp(narrow, "0") != 0) return false;
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

#ifdef ACTIVERM_WIDE_VECTORS
// Eight coordinates of a float or double row as doubles: widened exactly, as static_cast<double>
// does.
template <class T>
ACTIVERM_WIDE inline __m512d load_eight(const T* p) {
  if constexpr (std::is_same<T, double>::value) {
    return _mm512_loadu_pd(p);
  } else {
    return _mm512_cvtps_pd(_mm256_loadu_ps(p));
  }
}
#endif

}  // namespace activerm
