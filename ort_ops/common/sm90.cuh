// PTX wrappers for Hopper (sm_90a) kernels: mbarriers, TMA tile loads (cp.async.bulk.tensor) and
// warpgroup MMA (wgmma) with shared-memory descriptors. Callers compile these only for sm_90a
// (KAIO_SM90A_DEVICE below); the sm_80 pass of the same file sees none of them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <type_traits>

#include "common/ptx.cuh"

// True in the device pass for sm_90a, where wgmma and setmaxnreg exist.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KAIO_SM90A_DEVICE 1
#else
#define KAIO_SM90A_DEVICE 0
#endif

namespace kaio {
namespace sm90 {

// The host's view: the build holds sm_90a code (CMakeLists.txt defines KAIO_HAS_SM90A), so launchers
// may pick the Hopper kernels on a compute capability 9.0 device.
#ifdef KAIO_HAS_SM90A
constexpr bool kBuiltForSm90a = true;
#else
constexpr bool kBuiltForSm90a = false;
#endif

using ptx::SmemAddr;

// ---- mbarriers (shared memory, CTA scope) ----
__device__ __forceinline__ void MbarInit(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(SmemAddr(bar)), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the async proxy (TMA) before any thread uses them.
__device__ __forceinline__ void FenceBarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void MbarArrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(SmemAddr(bar)) : "memory");
}
// One arrival that also expects `bytes` of TMA transactions to complete the phase.
__device__ __forceinline__ void MbarArriveExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(SmemAddr(bar)), "r"(bytes)
               : "memory");
}
// Waits until the phase with the given parity (0 or 1) of `bar` has completed. KAIO_MBAR_TIMEOUT
// (the standalone probes' builds, not the library's) traps after ~2^28 tries, so a protocol mistake
// fails the launch instead of hanging the device call.
__device__ __forceinline__ void MbarWait(uint64_t* bar, uint32_t parity) {
  const uint32_t addr = SmemAddr(bar);
  uint32_t done = 0;
#ifdef KAIO_MBAR_TIMEOUT
  long long tries = 0;
#endif
  do {
#ifdef KAIO_MBAR_TIMEOUT
    if (++tries > (1ll << 28)) __trap();
#endif
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(addr), "r"(parity)
        : "memory");
  } while (!done);
}

// ---- clusters ----
__device__ __forceinline__ uint32_t ClusterCtaRank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
// Every thread of every CTA of the cluster: arrive, then wait for all (release / acquire).
__device__ __forceinline__ void ClusterSync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
// One arrival on the mbarrier at `bar`'s offset in the shared memory of cluster CTA `cta` (itself too).
// Default semantics (release, CTA scope), as CUTLASS's ClusterBarrier::arrive: what it orders here are
// wgmma reads already completed by wgmma.wait_group; a .cluster scope would add a GPU-wide MEMBAR per
// arrival (seen in the SASS).
__device__ __forceinline__ void MbarArriveCluster(uint64_t* bar, uint32_t cta) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(SmemAddr(bar)), "r"(cta));
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}

// ---- TMA ----
// A box of a 3-D tensor map (coordinates innermost first, in elements) into shared memory; the
// transfer completes a transaction count of the box's bytes on `bar`. Out-of-range elements are zero.
__device__ __forceinline__ void TmaLoad3d(void* smem, const void* tensor_map, uint64_t* bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::
          "r"(SmemAddr(smem)),
      "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(SmemAddr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// TmaLoad3d into every CTA of the cluster in `cta_mask`: the box lands at `smem`'s offset in each,
// completing its bytes on the mbarrier at `bar`'s offset there.
__device__ __forceinline__ void TmaLoad3dMulticast(void* smem, const void* tensor_map, uint64_t* bar, int c0, int c1,
                                                   int c2, uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%3, %4, %5}], [%2], %6;\n" ::"r"(SmemAddr(smem)),
      "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(SmemAddr(bar)), "r"(c0), "r"(c1), "r"(c2), "h"(cta_mask)
      : "memory");
}

// The same for a 4-D tensor map (the attention kernels' (D, S, heads, batch) views of Q, K and V).
__device__ __forceinline__ void TmaLoad4d(void* smem, const void* tensor_map, uint64_t* bar, int c0, int c1, int c2,
                                          int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::
          "r"(SmemAddr(smem)),
      "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(SmemAddr(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// ---- register budget (setmaxnreg) ----
// Producer warpgroups give registers back, consumer warpgroups take them; every thread of the
// warpgroup executes it, and the kernel needs a register cap at entry (__launch_bounds__(n, 1)).
template <int kRegs>
__device__ __forceinline__ void SetMaxNRegDec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void SetMaxNRegInc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// ---- wgmma ----
// Shared-memory matrix descriptor of a tile in the 128-byte swizzled layout TMA writes with
// CU_TENSOR_MAP_SWIZZLE_128B (rows of 128 bytes, 8-row atoms of 1024 bytes, the atom 1024-byte
// aligned). K-major operand: stride_bytes = 1024 (between 8-row groups), leading unused; a K step
// inside the 128-byte row moves the start address. MN-major operand (transposed): leading_bytes =
// distance between 64-element column blocks, stride_bytes = 1024 (between 8-row groups of K).
__device__ __forceinline__ uint64_t DescSw128(const void* smem, uint32_t leading_bytes, uint32_t stride_bytes) {
  const uint64_t addr = SmemAddr(smem);
  return ((addr & 0x3FFFF) >> 4) | (uint64_t((leading_bytes & 0x3FFFF) >> 4) << 16) |
         (uint64_t((stride_bytes & 0x3FFFF) >> 4) << 32) | (uint64_t(1) << 62);
}
// The descriptor of the tile `bytes` past the one `desc` describes: its start address field (bits
// 0-13, address / 16) moved on. Shared-memory addresses stay below 2^18, so the field never carries:
// one 64-bit add per k step where DescSw128 of each step's address costs about eight instructions.
__device__ __forceinline__ uint64_t DescAt(uint64_t desc, int bytes) { return desc + uint64_t(bytes >> 4); }

// Ordinary shared-memory stores (a tile the consumers dequantised) that wgmma, the async proxy, reads
// next: a proxy fence, then named barrier 1 over the kThreads consumer threads that wrote it.
template <int kThreads>
__device__ __forceinline__ void PublishToWgmma() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  asm volatile("bar.sync 1, %0;\n" ::"n"(kThreads) : "memory");
}
__device__ __forceinline__ void WgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void WgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Four 8 x 8 matrices of 16-bit elements, each held as mma's accumulator pairs (lane l: row l / 4,
// columns 2 (l % 4), + 1; register i: matrix i), stored transposed: row c of matrix i (its column c,
// 8 elements, 16 bytes) at the shared-memory address lane 8 i + c gives.
__device__ __forceinline__ void StMatrixX4Trans(uint32_t row_addr, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(row_addr), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}
// Keeps the compiler from moving accesses to the accumulators across this point (they are written
// asynchronously by wgmma between a commit and its wait).
template <int kN>
__device__ __forceinline__ void FenceOperands(float (&acc)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(acc[i])::"memory");
}
// The same for register A fragments, which a wgmma reads asynchronously until its wait.
template <int kN>
__device__ __forceinline__ void FenceOperands(uint32_t (&frag)[kN][4]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(frag[i][j])::"memory");
}

// The 64 accumulator operands of an m64n128 wgmma: the register list and its constraints.
#define KAIO_WGMMA_D64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define KAIO_WGMMA_OUT64(d) "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3]), "+f"((d)[4]), "+f"((d)[5]), "+f"((d)[6]), "+f"((d)[7]), "+f"((d)[8]), "+f"((d)[9]), "+f"((d)[10]), "+f"((d)[11]), "+f"((d)[12]), "+f"((d)[13]), "+f"((d)[14]), "+f"((d)[15]), "+f"((d)[16]), "+f"((d)[17]), "+f"((d)[18]), "+f"((d)[19]), "+f"((d)[20]), "+f"((d)[21]), "+f"((d)[22]), "+f"((d)[23]), "+f"((d)[24]), "+f"((d)[25]), "+f"((d)[26]), "+f"((d)[27]), "+f"((d)[28]), "+f"((d)[29]), "+f"((d)[30]), "+f"((d)[31]), "+f"((d)[32]), "+f"((d)[33]), "+f"((d)[34]), "+f"((d)[35]), "+f"((d)[36]), "+f"((d)[37]), "+f"((d)[38]), "+f"((d)[39]), "+f"((d)[40]), "+f"((d)[41]), "+f"((d)[42]), "+f"((d)[43]), "+f"((d)[44]), "+f"((d)[45]), "+f"((d)[46]), "+f"((d)[47]), "+f"((d)[48]), "+f"((d)[49]), "+f"((d)[50]), "+f"((d)[51]), "+f"((d)[52]), "+f"((d)[53]), "+f"((d)[54]), "+f"((d)[55]), "+f"((d)[56]), "+f"((d)[57]), "+f"((d)[58]), "+f"((d)[59]), "+f"((d)[60]), "+f"((d)[61]), "+f"((d)[62]), "+f"((d)[63])
// d[0..63] (f32, the m64n128 fragment of this thread) += A (64 x 16, descriptor; kTransA = 1:
// MN-major in shared memory) * B (16 x 128, descriptor; kTransB = 1: MN-major). T is __half or
// __nv_bfloat16.
template <typename T, int kTransB, int kTransA = 0>
__device__ __forceinline__ void WgmmaM64N128K16(float* d, uint64_t desc_a, uint64_t desc_b) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " KAIO_WGMMA_D64 ", %64, %65, p, 1, 1, %68, %67;\n}\n"
        : KAIO_WGMMA_OUT64(d)
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB), "n"(kTransA));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " KAIO_WGMMA_D64 ", %64, %65, p, 1, 1, %68, %67;\n}\n"
        : KAIO_WGMMA_OUT64(d)
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB), "n"(kTransA));
  }
}

// The 128 accumulator operands of an m64n256 wgmma.
#define KAIO_WGMMA_D128 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define KAIO_WGMMA_OUT128(d) "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3]), "+f"((d)[4]), "+f"((d)[5]), "+f"((d)[6]), "+f"((d)[7]), "+f"((d)[8]), "+f"((d)[9]), "+f"((d)[10]), "+f"((d)[11]), "+f"((d)[12]), "+f"((d)[13]), "+f"((d)[14]), "+f"((d)[15]), "+f"((d)[16]), "+f"((d)[17]), "+f"((d)[18]), "+f"((d)[19]), "+f"((d)[20]), "+f"((d)[21]), "+f"((d)[22]), "+f"((d)[23]), "+f"((d)[24]), "+f"((d)[25]), "+f"((d)[26]), "+f"((d)[27]), "+f"((d)[28]), "+f"((d)[29]), "+f"((d)[30]), "+f"((d)[31]), "+f"((d)[32]), "+f"((d)[33]), "+f"((d)[34]), "+f"((d)[35]), "+f"((d)[36]), "+f"((d)[37]), "+f"((d)[38]), "+f"((d)[39]), "+f"((d)[40]), "+f"((d)[41]), "+f"((d)[42]), "+f"((d)[43]), "+f"((d)[44]), "+f"((d)[45]), "+f"((d)[46]), "+f"((d)[47]), "+f"((d)[48]), "+f"((d)[49]), "+f"((d)[50]), "+f"((d)[51]), "+f"((d)[52]), "+f"((d)[53]), "+f"((d)[54]), "+f"((d)[55]), "+f"((d)[56]), "+f"((d)[57]), "+f"((d)[58]), "+f"((d)[59]), "+f"((d)[60]), "+f"((d)[61]), "+f"((d)[62]), "+f"((d)[63]), "+f"((d)[64]), "+f"((d)[65]), "+f"((d)[66]), "+f"((d)[67]), "+f"((d)[68]), "+f"((d)[69]), "+f"((d)[70]), "+f"((d)[71]), "+f"((d)[72]), "+f"((d)[73]), "+f"((d)[74]), "+f"((d)[75]), "+f"((d)[76]), "+f"((d)[77]), "+f"((d)[78]), "+f"((d)[79]), "+f"((d)[80]), "+f"((d)[81]), "+f"((d)[82]), "+f"((d)[83]), "+f"((d)[84]), "+f"((d)[85]), "+f"((d)[86]), "+f"((d)[87]), "+f"((d)[88]), "+f"((d)[89]), "+f"((d)[90]), "+f"((d)[91]), "+f"((d)[92]), "+f"((d)[93]), "+f"((d)[94]), "+f"((d)[95]), "+f"((d)[96]), "+f"((d)[97]), "+f"((d)[98]), "+f"((d)[99]), "+f"((d)[100]), "+f"((d)[101]), "+f"((d)[102]), "+f"((d)[103]), "+f"((d)[104]), "+f"((d)[105]), "+f"((d)[106]), "+f"((d)[107]), "+f"((d)[108]), "+f"((d)[109]), "+f"((d)[110]), "+f"((d)[111]), "+f"((d)[112]), "+f"((d)[113]), "+f"((d)[114]), "+f"((d)[115]), "+f"((d)[116]), "+f"((d)[117]), "+f"((d)[118]), "+f"((d)[119]), "+f"((d)[120]), "+f"((d)[121]), "+f"((d)[122]), "+f"((d)[123]), "+f"((d)[124]), "+f"((d)[125]), "+f"((d)[126]), "+f"((d)[127])
// d[0..127] (the m64n256 fragment) += A (64 x 16, descriptor) * B (16 x 256, descriptor), as
// WgmmaM64N128K16 (the dense GEMM's wide tiles: twice the columns per A fragment read).
template <typename T, int kTransB, int kTransA = 0>
__device__ __forceinline__ void WgmmaM64N256K16(float* d, uint64_t desc_a, uint64_t desc_b) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " KAIO_WGMMA_D128 ", %128, %129, p, 1, 1, %132, %131;\n}\n"
        : KAIO_WGMMA_OUT128(d)
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB), "n"(kTransA));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " KAIO_WGMMA_D128 ", %128, %129, p, 1, 1, %132, %131;\n}\n"
        : KAIO_WGMMA_OUT128(d)
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB), "n"(kTransA));
  }
}

// The 32 accumulator operands of an m64n64 wgmma.
#define KAIO_WGMMA_D32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define KAIO_WGMMA_OUT32(d) "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3]), "+f"((d)[4]), "+f"((d)[5]), "+f"((d)[6]), "+f"((d)[7]), "+f"((d)[8]), "+f"((d)[9]), "+f"((d)[10]), "+f"((d)[11]), "+f"((d)[12]), "+f"((d)[13]), "+f"((d)[14]), "+f"((d)[15]), "+f"((d)[16]), "+f"((d)[17]), "+f"((d)[18]), "+f"((d)[19]), "+f"((d)[20]), "+f"((d)[21]), "+f"((d)[22]), "+f"((d)[23]), "+f"((d)[24]), "+f"((d)[25]), "+f"((d)[26]), "+f"((d)[27]), "+f"((d)[28]), "+f"((d)[29]), "+f"((d)[30]), "+f"((d)[31])
// d[0..31] (the m64n64 fragment) += A (64 x 16, descriptor) * B (16 x 64, descriptor), as
// WgmmaM64N128K16 (the attention backward's 64-query and 64-column products).
template <typename T, int kTransB, int kTransA = 0>
__device__ __forceinline__ void WgmmaM64N64K16(float* d, uint64_t desc_a, uint64_t desc_b) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " KAIO_WGMMA_D32 ", %32, %33, p, 1, 1, %36, %35;\n}\n"
        : KAIO_WGMMA_OUT32(d)
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB), "n"(kTransA));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " KAIO_WGMMA_D32 ", %32, %33, p, 1, 1, %36, %35;\n}\n"
        : KAIO_WGMMA_OUT32(d)
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB), "n"(kTransA));
  }
}

// The shared-memory-operand wgmma of kN (64, 128 or 256) columns: d[0 .. kN / 2) += A * B.
template <typename T, int kN, int kTransB, int kTransA = 0>
__device__ __forceinline__ void WgmmaM64K16(float* d, uint64_t desc_a, uint64_t desc_b) {
  static_assert(kN == 64 || kN == 128 || kN == 256, "m64n64, m64n128 or m64n256");
  if constexpr (kN == 64) WgmmaM64N64K16<T, kTransB, kTransA>(d, desc_a, desc_b);
  else if constexpr (kN == 128) WgmmaM64N128K16<T, kTransB, kTransA>(d, desc_a, desc_b);
  else WgmmaM64N256K16<T, kTransB, kTransA>(d, desc_a, desc_b);
}

// ---- int8 wgmma (W8A8): s32 accumulators; both operands K-major in shared memory (wgmma has no
// transposed form for 8-bit types), so these take no transpose immediates. One k32 step reads 32
// bytes of each 128-byte swizzled row, as a 16-bit k16 step does.
#define KAIO_WGMMA_IOUT64(d) "+r"((d)[0]), "+r"((d)[1]), "+r"((d)[2]), "+r"((d)[3]), "+r"((d)[4]), "+r"((d)[5]), "+r"((d)[6]), "+r"((d)[7]), "+r"((d)[8]), "+r"((d)[9]), "+r"((d)[10]), "+r"((d)[11]), "+r"((d)[12]), "+r"((d)[13]), "+r"((d)[14]), "+r"((d)[15]), "+r"((d)[16]), "+r"((d)[17]), "+r"((d)[18]), "+r"((d)[19]), "+r"((d)[20]), "+r"((d)[21]), "+r"((d)[22]), "+r"((d)[23]), "+r"((d)[24]), "+r"((d)[25]), "+r"((d)[26]), "+r"((d)[27]), "+r"((d)[28]), "+r"((d)[29]), "+r"((d)[30]), "+r"((d)[31]), "+r"((d)[32]), "+r"((d)[33]), "+r"((d)[34]), "+r"((d)[35]), "+r"((d)[36]), "+r"((d)[37]), "+r"((d)[38]), "+r"((d)[39]), "+r"((d)[40]), "+r"((d)[41]), "+r"((d)[42]), "+r"((d)[43]), "+r"((d)[44]), "+r"((d)[45]), "+r"((d)[46]), "+r"((d)[47]), "+r"((d)[48]), "+r"((d)[49]), "+r"((d)[50]), "+r"((d)[51]), "+r"((d)[52]), "+r"((d)[53]), "+r"((d)[54]), "+r"((d)[55]), "+r"((d)[56]), "+r"((d)[57]), "+r"((d)[58]), "+r"((d)[59]), "+r"((d)[60]), "+r"((d)[61]), "+r"((d)[62]), "+r"((d)[63])
#define KAIO_WGMMA_IOUT128(d) KAIO_WGMMA_IOUT64(d), "+r"((d)[64]), "+r"((d)[65]), "+r"((d)[66]), "+r"((d)[67]), "+r"((d)[68]), "+r"((d)[69]), "+r"((d)[70]), "+r"((d)[71]), "+r"((d)[72]), "+r"((d)[73]), "+r"((d)[74]), "+r"((d)[75]), "+r"((d)[76]), "+r"((d)[77]), "+r"((d)[78]), "+r"((d)[79]), "+r"((d)[80]), "+r"((d)[81]), "+r"((d)[82]), "+r"((d)[83]), "+r"((d)[84]), "+r"((d)[85]), "+r"((d)[86]), "+r"((d)[87]), "+r"((d)[88]), "+r"((d)[89]), "+r"((d)[90]), "+r"((d)[91]), "+r"((d)[92]), "+r"((d)[93]), "+r"((d)[94]), "+r"((d)[95]), "+r"((d)[96]), "+r"((d)[97]), "+r"((d)[98]), "+r"((d)[99]), "+r"((d)[100]), "+r"((d)[101]), "+r"((d)[102]), "+r"((d)[103]), "+r"((d)[104]), "+r"((d)[105]), "+r"((d)[106]), "+r"((d)[107]), "+r"((d)[108]), "+r"((d)[109]), "+r"((d)[110]), "+r"((d)[111]), "+r"((d)[112]), "+r"((d)[113]), "+r"((d)[114]), "+r"((d)[115]), "+r"((d)[116]), "+r"((d)[117]), "+r"((d)[118]), "+r"((d)[119]), "+r"((d)[120]), "+r"((d)[121]), "+r"((d)[122]), "+r"((d)[123]), "+r"((d)[124]), "+r"((d)[125]), "+r"((d)[126]), "+r"((d)[127])
// d[0 .. kN / 2) (s32, the m64nN fragment: the f32 form's layout) += A (64 x 32 s8, K-major
// descriptor) * B (32 x kN s8, K-major descriptor: B stored [N, K]), kN 128 or 256. Exact (no
// saturation): the caller bounds K (|a b| <= 2^14, so K < 2^17 terms fit in s32).
template <int kN>
__device__ __forceinline__ void WgmmaM64K32S8(int32_t* d, uint64_t desc_a, uint64_t desc_b) {
  static_assert(kN == 128 || kN == 256, "the dense GEMM's tiles are 128 or 256 columns wide");
  if constexpr (kN == 128) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " KAIO_WGMMA_D64 ", %64, %65, p;\n}\n"
        : KAIO_WGMMA_IOUT64(d)
        : "l"(desc_a), "l"(desc_b), "r"(1));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 " KAIO_WGMMA_D128 ", %128, %129, p;\n}\n"
        : KAIO_WGMMA_IOUT128(d)
        : "l"(desc_a), "l"(desc_b), "r"(1));
  }
}
// The s32 accumulators' counterpart of FenceOperands(float (&)[kN]).
template <int kN>
__device__ __forceinline__ void FenceOperands(int32_t (&acc)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+r"(acc[i])::"memory");
}

// d[0..63] (the m64n128 fragment) += A (64 x 16 from registers: a[0..3] in mma.sync's m16n8k16 A
// fragment layout, warp w of the warpgroup holding rows 16 w .. 16 w + 15) * B (16 x 128, descriptor;
// kTransB = 1: MN-major in shared memory). The register-A ("RS") form.
template <typename T, int kTransB>
__device__ __forceinline__ void WgmmaRsM64N128K16(float* d, const uint32_t (&a)[4], uint64_t desc_b) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " KAIO_WGMMA_D64 ", {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : KAIO_WGMMA_OUT64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1), "n"(kTransB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " KAIO_WGMMA_D64 ", {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : KAIO_WGMMA_OUT64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1), "n"(kTransB));
  }
}

// d[0..31] (the m64n64 fragment) += A (64 x 16 from registers, as above) * B (16 x 64, descriptor).
template <typename T, int kTransB>
__device__ __forceinline__ void WgmmaRsM64N64K16(float* d, const uint32_t (&a)[4], uint64_t desc_b) {
  if constexpr (std::is_same<T, __half>::value) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " KAIO_WGMMA_D32 ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : KAIO_WGMMA_OUT32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1), "n"(kTransB));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " KAIO_WGMMA_D32 ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : KAIO_WGMMA_OUT32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1), "n"(kTransB));
  }
}

// The register-A wgmma of kN (64 or 128) columns: d[0 .. kN / 2) += A (registers) * B.
template <typename T, int kN, int kTransB>
__device__ __forceinline__ void WgmmaRsM64K16(float* d, const uint32_t (&a)[4], uint64_t desc_b) {
  static_assert(kN == 64 || kN == 128, "m64n64 or m64n128");
  if constexpr (kN == 64) WgmmaRsM64N64K16<T, kTransB>(d, a, desc_b);
  else WgmmaRsM64N128K16<T, kTransB>(d, a, desc_b);
}

}  // namespace sm90
}  // namespace kaio
