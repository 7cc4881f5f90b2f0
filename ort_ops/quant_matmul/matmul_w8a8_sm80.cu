// MatmulInt8 W8A8 on CUDA (sm_80+): Y = float(double(sum_k int32(a) int32(b)) * scale), exact s32
// sums (K <= kMatmulW8A8MaxK).
//
// B arrives [K, N] row-major; both tensor-core forms want K-major operands (wgmma accepts nothing
// else for 8-bit types), so a tiled transpose writes B^T [N, K] into the op's scratch first (64 x 64
// byte tiles through shared memory, 16-byte global loads and stores where the rows allow). Then:
// - sm_90a: the TMA + wgmma GEMM of matmul_tc/matmul_tc_wgmma_kernel.cuh instantiated for int8
//   (RunMatmulS8Wgmma in matmul_tc_sm90.cu; K % 16 == 0, N % 8 == 0, 16-byte aligned A and Y);
// - otherwise (sm_80-89, and the shapes and alignments the TMA path declines): the mma.sync kernel
//   below, m16n8k32 .s32.s8.s8, 128 x 128 block tiles of 8 warps (64 x 32 each), K tiles of 64
//   bytes double-buffered in shared memory (cp.async where K % 16 == 0 and A is 16-byte aligned,
//   else element loads with zeros past the edges), fragments read as 32-bit words from rows padded
//   to 80 bytes (conflict-free: 8 rows x 4 words land in 32 distinct banks).
// Both epilogues compute the CPU kernel's float(double(s) * double(scale)), so Y matches it bit for bit.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/aligned.h"
#include "common/env_switch.h"
#include "common/ptx.cuh"
#include "matmul_tc/matmul_tc_params.h"
#include "quant_matmul/quant_matmul_params.h"

namespace kaio {

// matmul_tc_sm90.cu: the int8 instance of the Hopper GEMM; cudaErrorNotSupported where it does not apply.
cudaError_t RunMatmulS8Wgmma(const MatmulTcParams& p, cudaStream_t stream);

namespace w8a8 {
namespace {

// ---- B [K, N] -> B^T [N, K] ----
constexpr int kT = 64;           // tile: 64 k rows x 64 n columns of bytes
constexpr int kTLd = kT + 4;     // shared row stride (words: 17; 2-way conflicts at most on the gather)
constexpr int kTThreads = 256;   // 64 rows x 4 chunks of 16 bytes

__global__ void __launch_bounds__(kTThreads) TransposeS8Kernel(const int8_t* __restrict__ b, int8_t* __restrict__ bt,
                                                               int64_t k, int64_t n, bool vec_in, bool vec_out) {
  __shared__ __align__(16) uint8_t tile[kT * kTLd];
  const int t = threadIdx.x, r = t / 4, c = (t % 4) * 16;
  const int64_t k0 = int64_t(blockIdx.y) * kT, n0 = int64_t(blockIdx.x) * kT;
  {  // load row k0 + r, columns n0 + c .. + 15
    const int64_t row = k0 + r, col = n0 + c;
    uint32_t w[4] = {0, 0, 0, 0};
    if (row < k) {
      const int8_t* src = b + row * n + col;
      if (vec_in && col + 16 <= n) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(src));
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
      } else {
        for (int j = 0; j < 16; ++j)
          if (col + j < n) w[j / 4] |= uint32_t(uint8_t(src[j])) << (8 * (j % 4));
      }
    }
    uint32_t* dst = reinterpret_cast<uint32_t*>(tile + r * kTLd + c);
#pragma unroll
    for (int j = 0; j < 4; ++j) dst[j] = w[j];
  }
  __syncthreads();
  {  // store row n0 + r of B^T, k0 + c .. + 15: column r of the tile
    const int64_t row = n0 + r, col = k0 + c;
    if (row >= n) return;
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int j = 0; j < 16; ++j) w[j / 4] |= uint32_t(tile[(c + j) * kTLd + r]) << (8 * (j % 4));
    int8_t* dst = bt + row * k + col;
    if (vec_out && col + 16 <= k) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      for (int j = 0; j < 16 && col + j < k; ++j) dst[j] = int8_t(w[j / 4] >> (8 * (j % 4)));
    }
  }
}

// ---- mma.sync GEMM: A [M, K] x B^T [N, K] ----
constexpr int kBM = 128, kBN = 128, kBK = 64, kLd = kBK + 16, kThreads = 256;

__device__ __forceinline__ void MmaS8(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Rows r0 .. r0 + 127, k0 .. k0 + 63 of a [rows, k] int8 matrix into a shared tile of 80-byte rows;
// zeros past the edges. kVec: K % 16 == 0 and a 16-byte aligned base (a 16-byte chunk lies wholly
// inside or past K), cp.async; else element loads.
template <bool kVec>
__device__ __forceinline__ void LoadTile(uint8_t* s, const int8_t* g, int64_t rows, int64_t k, int64_t r0, int64_t k0,
                                         int tid) {
#pragma unroll
  for (int i = 0; i < (kBM * kBK / 16) / kThreads; ++i) {
    const int chunk = tid + i * kThreads, r = chunk / (kBK / 16), kc = (chunk % (kBK / 16)) * 16;
    uint8_t* dst = s + r * kLd + kc;
    const int64_t row = r0 + r, col = k0 + kc;
    if constexpr (kVec) {
      const bool in = row < rows && col < k;
      ptx::CpAsync16(dst, in ? g + row * k + col : g, in);
    } else {
      uint32_t w[4] = {0, 0, 0, 0};
      if (row < rows) {
        const int8_t* src = g + row * k + col;
        for (int j = 0; j < 16; ++j)
          if (col + j < k) w[j / 4] |= uint32_t(uint8_t(src[j])) << (8 * (j % 4));
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads) W8A8MmaKernel(MatmulW8A8Params p, const int8_t* __restrict__ bt) {
  __shared__ __align__(16) uint8_t sa[2][kBM * kLd];
  __shared__ __align__(16) uint8_t sb[2][kBN * kLd];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wm = warp / 4, wn = warp % 4;  // warp tile: rows 64 wm .., columns 32 wn ..
  const int64_t m0 = int64_t(blockIdx.y) * kBM, n0 = int64_t(blockIdx.x) * kBN;
  int32_t acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;
  const int64_t k_tiles = (p.k + kBK - 1) / kBK;
  if (k_tiles > 0) {
    LoadTile<kVec>(sa[0], p.a, p.m, p.k, m0, 0, tid);
    LoadTile<kVec>(sb[0], bt, p.n, p.k, n0, 0, tid);
  }
  ptx::CpAsyncCommit();
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    const int cur = int(kt & 1);
    if (kt + 1 < k_tiles) {
      LoadTile<kVec>(sa[cur ^ 1], p.a, p.m, p.k, m0, (kt + 1) * kBK, tid);
      LoadTile<kVec>(sb[cur ^ 1], bt, p.n, p.k, n0, (kt + 1) * kBK, tid);
    }
    ptx::CpAsyncCommit();
    ptx::CpAsyncWait<1>();
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint8_t* base = sa[cur] + (wm * 64 + i * 16 + g) * kLd + ks * 32 + t * 4;
        af[i][0] = *reinterpret_cast<const uint32_t*>(base);
        af[i][1] = *reinterpret_cast<const uint32_t*>(base + 8 * kLd);
        af[i][2] = *reinterpret_cast<const uint32_t*>(base + 16);
        af[i][3] = *reinterpret_cast<const uint32_t*>(base + 8 * kLd + 16);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint8_t* base = sb[cur] + (wn * 32 + j * 8 + g) * kLd + ks * 32 + t * 4;
        bf[j][0] = *reinterpret_cast<const uint32_t*>(base);
        bf[j][1] = *reinterpret_cast<const uint32_t*>(base + 16);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) MmaS8(acc[i][j], af[i], bf[j]);
    }
    __syncthreads();  // the next iteration's loads overwrite this stage
  }
  // Fragment: rows g and g + 8 of each 16-row block, columns 2 t and 2 t + 1 of each 8-column block.
  const double scale = static_cast<double>(*p.scale);
  float* y_f = static_cast<float*>(p.y);
  __half* y_h = static_cast<__half*>(p.y);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = m0 + wm * 64 + i * 16 + g + 8 * h;
        const int64_t col = n0 + wn * 32 + j * 8 + 2 * t;
        if (row >= p.m) continue;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (col + e >= p.n) continue;
          const float v = static_cast<float>(static_cast<double>(acc[i][j][2 * h + e]) * scale);
          if (p.out_f32) y_f[row * p.n + col + e] = v;
          else y_h[row * p.n + col + e] = __float2half_rn(v);
        }
      }
}

}  // namespace
}  // namespace w8a8

int64_t MatmulW8A8ScratchBytes(const MatmulW8A8Params& p) {
  if (p.m == 0 || p.n == 0 || p.k == 0) return 0;
  return p.n * p.k;
}

int RunMatmulW8A8(const MatmulW8A8Params& p, void* scratch, void* stream_ptr) {
  using namespace w8a8;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (p.m == 0 || p.n == 0) return cudaSuccess;
  if (p.k > kMatmulW8A8MaxK || p.m > kMatmulW8A8MaxRows) return cudaErrorInvalidValue;  // the glue refuses first
  int8_t* bt = static_cast<int8_t*>(scratch);
  if (p.k > 0) {
    if (!bt || !Aligned16(bt)) return cudaErrorInvalidValue;
    const dim3 grid(unsigned((p.n + kT - 1) / kT), unsigned((p.k + kT - 1) / kT));
    TransposeS8Kernel<<<grid, kTThreads, 0, stream>>>(p.b, bt, p.k, p.n, p.n % 16 == 0 && Aligned16(p.b),
                                                      p.k % 16 == 0);
    if (cudaError_t e = cudaGetLastError()) return e;
    if (WgmmaEnabled()) {  // KAIO_WGMMA=0: the mma.sync kernel on sm_90 too
      MatmulTcParams tp;
      tp.a = p.a;
      tp.b = bt;
      tp.y = p.y;
      tp.in_type = MatmulElem::kI8;
      tp.out_type = p.out_f32 ? MatmulElem::kF32 : MatmulElem::kF16;
      tp.trans_b = true;
      tp.use_async = true;
      tp.m = p.m, tp.n = p.n, tp.k = p.k;
      tp.sm = p.sm, tp.sm_count = p.sm_count;
      tp.acc_scale = p.scale;
      const cudaError_t e = RunMatmulS8Wgmma(tp, stream);
      if (e != cudaErrorNotSupported) return e;
    }
  }
  // K == 0 comes here too: no tiles, Y = float(0 * scale) as on the CPU.
  const dim3 grid(unsigned((p.n + kBN - 1) / kBN), unsigned((p.m + kBM - 1) / kBM));
  if (p.k % 16 == 0 && Aligned16(p.a) && (p.k == 0 || Aligned16(bt)))
    W8A8MmaKernel<true><<<grid, kThreads, 0, stream>>>(p, bt);
  else
    W8A8MmaKernel<false><<<grid, kThreads, 0, stream>>>(p, bt);
  return cudaGetLastError();
}

}  // namespace kaio
