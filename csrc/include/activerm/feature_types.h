// The element types features may be stored in, and their exact conversion to float on read.
// Half-precision features (IEEE float16, bfloat16: what the feature extractors of large models
// produce) are kept as their 16 bits and widened where a kernel reads them, so an (n, d) matrix
// is never copied to float32 first. Every float16 and bfloat16 value is exactly a float, so a
// kernel reading halves computes bit for bit what it computes from float32 features holding the
// same values: after the read the code path is the same.
//
// C++17 has no portable half type (gcc's _Float16 and __bf16 depend on the compiler version and
// target), so on the host the conversion is integer bit arithmetic, exact for every input
// (subnormals, signed zeros, infinities and NaN included); CUDA device code uses the toolkit's
// __half and __nv_bfloat16 conversions, which are exact too.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define ARM_FEATURE_HD __host__ __device__ __forceinline__
#else
#define ARM_FEATURE_HD inline
#endif

namespace activerm {

// FeatureView::dtype; float32 and float64 keep the values of the flag they replace (is_double).
constexpr int32_t kFeatureFloat32 = 0;
constexpr int32_t kFeatureFloat64 = 1;
constexpr int32_t kFeatureFloat16 = 2;
constexpr int32_t kFeatureBFloat16 = 3;

inline int64_t feature_bytes(int32_t dtype) {
  return dtype == kFeatureFloat64 ? 8 : dtype == kFeatureFloat32 ? 4 : 2;
}

ARM_FEATURE_HD float float_from_bits(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

ARM_FEATURE_HD uint32_t float_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits. Without branches, so the
// loops that read features stay straight-line code: each case is computed and one selected.
//  * normal: the exponent re-biased from 15 to 127, the fraction moved to the top;
//  * subnormal or zero, fraction * 2^-24: an integer below 2^10 converts to float exactly and
//    the product with a power of two is exact (and normal), zero giving +0;
//  * infinity, NaN: the all-ones exponent, the fraction (a NaN's payload) kept.
// The sign is or-ed in last, so -0 stays -0.
ARM_FEATURE_HD float float16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t magnitude = h & 0x7fffu;
  const uint32_t exponent = magnitude & 0x7c00u;
  const uint32_t normal = (magnitude << 13) + 0x38000000u;
  const uint32_t small = float_bits(static_cast<float>(magnitude) * 0x1p-24f);
  const uint32_t special = 0x7f800000u | (magnitude << 13);
  const uint32_t bits = exponent == 0 ? small : exponent == 0x7c00u ? special : normal;
  return float_from_bits(sign | bits);
}

// bfloat16 is the upper half of a float32.
ARM_FEATURE_HD float bfloat16_to_float(uint16_t b) {
  return float_from_bits(static_cast<uint32_t>(b) << 16);
}

// A stored float16 / bfloat16 feature: its bits, read as a float (then widened to double like a
// float32 feature wherever a kernel does static_cast<double>).
struct Float16 {
  uint16_t bits;
  ARM_FEATURE_HD operator float() const {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(bits));
#else
    return float16_to_float(bits);
#endif
  }
};

struct BFloat16 {
  uint16_t bits;
  ARM_FEATURE_HD operator float() const {
#if defined(__CUDA_ARCH__)
    return __bfloat162float(__ushort_as_bfloat16(bits));
#else
    return bfloat16_to_float(bits);
#endif
  }
};

static_assert(sizeof(Float16) == 2 && sizeof(BFloat16) == 2, "stored as their 16 bits");

template <class T>
constexpr bool kHalfFeature = std::is_same<T, Float16>::value || std::is_same<T, BFloat16>::value;

// The type a difference of two features is formed and stored in (pair_diff): the features' own
// type, float for halves, so that half features give the float32 features' differences.
template <class T>
using StoredDifference = std::conditional_t<kHalfFeature<T>, float, T>;

#if defined(__CUDACC__)
// A feature through the read-only data cache: __ldg of the element, or of a half's 16 bits.
template <class T>
__device__ __forceinline__ T load_feature(const T* p) {
  if constexpr (kHalfFeature<T>) {
    return T{__ldg(reinterpret_cast<const unsigned short*>(p))};
  } else {
    return __ldg(p);
  }
}
#endif

// Calls fn(T{}, I{}) with T the feature type (float, double, Float16, BFloat16) and I the pair
// index type (int32_t, int64_t).
template <class Fn>
void dispatch_features(int32_t dtype, bool is_int64, Fn&& fn) {
  auto with_index = [&](auto t) {
    if (is_int64) fn(t, int64_t{});
    else fn(t, int32_t{});
  };
  switch (dtype) {
    case kFeatureFloat64: with_index(double{}); break;
    case kFeatureFloat16: with_index(Float16{}); break;
    case kFeatureBFloat16: with_index(BFloat16{}); break;
    default: with_index(float{}); break;
  }
}

// Calls fn(T{}) with the feature type alone.
template <class Fn>
void dispatch_feature_type(int32_t dtype, Fn&& fn) {
  dispatch_features(dtype, false, [&](auto t, auto) { fn(t); });
}

}  // namespace activerm
