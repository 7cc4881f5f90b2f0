// PTX wrappers shared by the tensor-core kernels (sm_80+): shared-memory addresses, ldmatrix,
// mma.sync m16n8k16 with f32 accumulators, and cp.async with zero fill.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

namespace kaio {
namespace ptx {

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ldmatrix at a shared-memory address (SmemAddr), or at a generic pointer into shared memory.
__device__ __forceinline__ void LdMatrixX4(uint32_t* r, uint32_t smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t* r, uint32_t smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem));
}
__device__ __forceinline__ void LdMatrixX4(uint32_t* r, const void* p) { LdMatrixX4(r, SmemAddr(p)); }
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t* r, const void* p) { LdMatrixX4Trans(r, SmemAddr(p)); }

// c[0..3] += A (16 x 16, row) * B (16 x 8, col); T is __half or __nv_bfloat16.
template <typename T>
__device__ __forceinline__ void Mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// 16 bytes global -> shared, asynchronously; !ok writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(smem)), "l"(gmem),
               "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending)); }

// Two floats as one register of two 16-bit values (low = a).
template <typename T>
__device__ __forceinline__ uint32_t Pack2(float a, float b) {
  if constexpr (std::is_same<T, __half>::value) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// An 8 x 8 matrix of 16-bit values transposed across the warp (sm_75+): a tensor-core fragment
// (lane l holds row l / 4, columns 2 (l % 4) and + 1) comes back as the fragment of its transpose.
__device__ __forceinline__ uint32_t MovMatrixTrans(uint32_t v) {
  uint32_t t;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(t) : "r"(v));
  return t;
}
// The same for two 32-bit values (a, b) a lane: their low and high halves as two 16-bit matrices.
__device__ __forceinline__ void MovMatrixTrans32(uint32_t& a, uint32_t& b) {
  const uint32_t lo = MovMatrixTrans(__byte_perm(a, b, 0x5410)), hi = MovMatrixTrans(__byte_perm(a, b, 0x7632));
  a = __byte_perm(lo, hi, 0x5410);
  b = __byte_perm(lo, hi, 0x7632);
}

// A 4 x 4 transpose across each quad of lanes (lane % 4 = q): afterwards v[i] of lane q holds what
// lane i held in v[q]. The tensor-core fragments give lane q columns 2q, 2q + 1 of each 8-column
// block; after the transpose over four blocks, lane q holds all 8 columns of block q: one 16-byte
// store instead of four 4-byte ones. Two butterfly steps (lanes q ^ 2, then q ^ 1), every lane of
// the warp taking part.
__device__ __forceinline__ void QuadTranspose(uint32_t (&v)[4]) {
  const unsigned lane = threadIdx.x & 31;
  const bool hi2 = lane & 2, hi1 = lane & 1;
  {  // 2 x 2 blocks: lanes q and q ^ 2 swap the off-diagonal pairs
    const uint32_t r0 = __shfl_xor_sync(0xffffffffu, hi2 ? v[0] : v[2], 2);
    const uint32_t r1 = __shfl_xor_sync(0xffffffffu, hi2 ? v[1] : v[3], 2);
    if (hi2) v[0] = r0, v[1] = r1;
    else v[2] = r0, v[3] = r1;
  }
  {  // inside the blocks: lanes q and q ^ 1 swap the off-diagonal elements
    const uint32_t r0 = __shfl_xor_sync(0xffffffffu, hi1 ? v[0] : v[1], 1);
    const uint32_t r1 = __shfl_xor_sync(0xffffffffu, hi1 ? v[2] : v[3], 1);
    if (hi1) v[0] = r0, v[2] = r1;
    else v[1] = r0, v[3] = r1;
  }
}

}  // namespace ptx
}  // namespace kaio
