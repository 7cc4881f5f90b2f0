// Launcher of MatmulInt8's (W8A16) Hopper GEMM (matmul_int8_wgmma.cuh): tensor maps of A, the int8
// weights, the scales and zero points, built on the host for each run (they hold the operands'
// addresses), and a persistent grid of one CTA per SM (quant_wgmma.cuh), in K slices where its tiles
// are few, or from 1024 rows the weights dequantised first for the dense GEMM. MatmulInt8 only
// (QkvProjectInt8's output scale and bias stay on the mma.sync GEMM).
#include <cuda_runtime.h>

#include "quant_matmul/matmul_int8_wgmma.cuh"

namespace kaio {

// K slices on the kernel (QuantGemmSplits); 0: the mma.sync GEMM instead.
int64_t MatmulInt8WgmmaSplits(const MatmulInt8Params& p) {
  // TMA strides are multiples of 16 bytes: N % 16 (int8 rows), K % 8 (A's rows). A stage reads one
  // scale row (two at group 32): group sizes 0, 32 and multiples of 64 only. Per channel with zero
  // points, rows past K would dequantise to -zp * s (A's zeros there make the products 0 unless that
  // overflows): K % 64 == 0 keeps every stage inside K.
  const bool groups_fit = p.group_size == 0 || p.group_size == 32 || p.group_size % 64 == 0;
  const bool edge_ok = !(p.group_size == 0 && p.zero_points && p.k % 64 != 0);
  if (p.out_scale || p.bias || !p.scales || !groups_fit || !edge_ok || p.n % 16 != 0 || p.k % 8 != 0) return 0;
  return matmul_wgmma::QuantGemmSplits(p);
}

// The weights dequantised into W [K, N] in A's type, an item 8 columns of one row (N % 16 == 0,
// MatmulInt8WgmmaSplits), with the wgmma kernel's arithmetic (DequantSegment).
template <typename T, bool kZp>
__global__ void __launch_bounds__(matmul_wgmma::kDequantThreads) DequantInt8Kernel(MatmulInt8Params p, uint4* w) {
  const uint32_t row_items = uint32_t(p.n / 8), cols = uint32_t(p.n), group = uint32_t(p.group_size);
  const uint16_t* scales = static_cast<const uint16_t*>(p.scales);
  const uint16_t* zero_points = static_cast<const uint16_t*>(p.zero_points);
  matmul_wgmma::DequantItems(
      uint32_t(p.k) * row_items, [&](uint32_t i) { return __ldg(reinterpret_cast<const uint2*>(p.b) + i); },
      [&](uint32_t i, uint2 b) {
        const uint32_t k = i / row_items, at = (group > 0 ? k / group : 0) * cols + (i - k * row_items) * 8;
        const uint4 s = __ldg(reinterpret_cast<const uint4*>(scales + at));
        const uint4 z = kZp ? __ldg(reinterpret_cast<const uint4*>(zero_points + at)) : make_uint4(0, 0, 0, 0);
        w[i] = int8mm::DequantSegment<T>(b, s, z, kZp);
      });
}

int64_t MatmulInt8WgmmaScratchBytes(const MatmulInt8Params& p) {
  return matmul_wgmma::QuantWgmmaScratchBytes(p, MatmulInt8WgmmaSplits(p), false);
}

// `scratch`: MatmulInt8WgmmaScratchBytes(p) bytes.
cudaError_t RunMatmulInt8Wgmma(const MatmulInt8Params& p, void* scratch, cudaStream_t stream) {
  using namespace matmul_wgmma;
  const int64_t splits = MatmulInt8WgmmaSplits(p);
  if (splits == 0) return cudaErrorNotSupported;  // the caller takes the mma.sync GEMM
  if (DequantFirst(p, false)) {
    auto dequant = [&](auto t, auto zp, unsigned blocks) {
      DequantInt8Kernel<typename decltype(t)::type, decltype(zp)::value>
          <<<blocks, kDequantThreads, 0, stream>>>(p, static_cast<uint4*>(scratch));
      return cudaGetLastError();
    };
    return RunDequantFirst(p, scratch, false, dequant, stream);
  }
  auto weights_map = [&](auto* b_op) {  // int8 [K, N], boxes of 64 rows x 128 columns
    return MakeTensorMap(&b_op->weights, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.b, p.k, p.n, 1, kBlockK, kBlockN,
                         CU_TENSOR_MAP_SWIZZLE_NONE);
  };
  return LaunchQuantGemm<Int8B>(p, splits, scratch, p.group_size > 0 ? p.k / p.group_size : 1, weights_map, stream);
}

}  // namespace kaio
