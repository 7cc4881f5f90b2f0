// Device helpers on 16-bit float values shared by the kernels: a half / bfloat16 bit pattern as
// float, two-lane arithmetic on packed registers, and the one rounded store of a result to float or
// the input type T (__half or __nv_bfloat16).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

namespace kaio {

template <typename T>
__device__ __forceinline__ float ToFloat(uint16_t h) {
  if constexpr (std::is_same<T, __half>::value)
    return __half2float(__ushort_as_half(h));
  else
    return __uint_as_float(uint32_t(h) << 16);
}

// Both halves of a packed register of two T as floats (x: the low half).
template <typename T>
__device__ __forceinline__ float2 ToFloat2(uint32_t v) {
  if constexpr (std::is_same<T, __half>::value)
    return __half22float2(*reinterpret_cast<__half2*>(&v));
  else
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
}

// A register holding two T as T's packed pair type (__half2 / __nv_bfloat162), and back.
template <typename T>
using Pair2 = std::conditional_t<std::is_same<T, __half>::value, __half2, __nv_bfloat162>;

template <typename T>
__device__ __forceinline__ Pair2<T> AsPair(uint32_t r) {
  return *reinterpret_cast<Pair2<T>*>(&r);
}

template <typename T>
__device__ __forceinline__ uint32_t Bits(Pair2<T> x) {
  return *reinterpret_cast<uint32_t*>(&x);
}

// a - b and a * b on both halves of packed registers, in T (one rounding each).
template <typename T>
__device__ __forceinline__ uint32_t Sub2(uint32_t a, uint32_t b) {
  return Bits<T>(__hsub2(AsPair<T>(a), AsPair<T>(b)));
}

template <typename T>
__device__ __forceinline__ uint32_t Mul2(uint32_t a, uint32_t b) {
  return Bits<T>(__hmul2(AsPair<T>(a), AsPair<T>(b)));
}

// v rounded (to nearest even) to T.
template <typename T>
__device__ __forceinline__ T FromFloat(float v) {
  if constexpr (std::is_same<T, __half>::value)
    return __float2half_rn(v);
  else
    return __float2bfloat16_rn(v);
}

// y[idx] = v as float (out_f32) or rounded once to T.
template <typename T>
__device__ __forceinline__ void StoreElem(void* y, int64_t idx, float v, bool out_f32) {
  if (out_f32)
    static_cast<float*>(y)[idx] = v;
  else
    static_cast<T*>(y)[idx] = FromFloat<T>(v);
}

}  // namespace kaio
