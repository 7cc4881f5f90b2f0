// Launcher of MatmulInt4's Hopper GEMM (matmul_int4_wgmma.cuh): tensor maps of A, the packed codes,
// the scales and zero points, built on the host for each run (they hold the operands' addresses),
// and a persistent grid of one CTA per SM (quant_wgmma.cuh), in K slices where its tiles are few, or
// from 1024 rows the weights dequantised first for the dense GEMM. One projection without bias
// (MatmulInt4); QkvProjectInt4 keeps the mma.sync GEMM.
#include <cuda_runtime.h>

#include "quant_matmul/matmul_int4_wgmma.cuh"

namespace kaio {

// K slices on the kernel (QuantGemmSplits); 0: the mma.sync GEMM instead. TMA strides are
// multiples of 16 bytes: N % 8 (scales' rows), K % 32 (codes' rows; K % group does it).
int64_t MatmulInt4WgmmaSplits(const MatmulInt4Params& p) {
  if (p.bias || p.n % 8 != 0 || p.k % 32 != 0) return 0;
  return matmul_wgmma::QuantGemmSplits(p);
}

// The weights dequantised into W [N, K] (K-major: the dense GEMM's trans_b operand), an item a
// 32-bit word (8 codes of one column), with the wgmma kernel's arithmetic (DequantPair).
template <typename T, bool kZp>
__global__ void __launch_bounds__(matmul_wgmma::kDequantThreads) DequantInt4Kernel(MatmulInt4Params p, uint4* w) {
  const uint32_t row_words = uint32_t(p.k / 8), group_words = uint32_t(p.group_size / 8), cols = uint32_t(p.n);
  const uint16_t* scales = static_cast<const uint16_t*>(p.scales);
  const uint16_t* zero_points = static_cast<const uint16_t*>(p.zero_points);
  matmul_wgmma::DequantItems(
      uint32_t(p.n) * row_words, [&](uint32_t i) { return __ldg(p.b + i); },
      [&](uint32_t i, uint32_t word) {
        const uint32_t n = i / row_words, at = (i - n * row_words) / group_words * cols + n;
        const uint32_t s2 = Bcast(__ldg(scales + at)), z2 = kZp ? Bcast(__ldg(zero_points + at)) : 0u, w4 = word >> 4;
        w[i] = make_uint4(int4mm::DequantPair<T, kZp, 0>(word, w4, s2, z2),
                          int4mm::DequantPair<T, kZp, 1>(word, w4, s2, z2),
                          int4mm::DequantPair<T, kZp, 2>(word, w4, s2, z2),
                          int4mm::DequantPair<T, kZp, 3>(word, w4, s2, z2));
      });
}

int64_t MatmulInt4WgmmaScratchBytes(const MatmulInt4Params& p) {
  return matmul_wgmma::QuantWgmmaScratchBytes(p, MatmulInt4WgmmaSplits(p), true);
}

// `scratch`: MatmulInt4WgmmaScratchBytes(p) bytes.
cudaError_t RunMatmulInt4Wgmma(const MatmulInt4Params& p, void* scratch, cudaStream_t stream) {
  using namespace matmul_wgmma;
  const int64_t splits = MatmulInt4WgmmaSplits(p);
  if (splits == 0) return cudaErrorNotSupported;  // the caller takes the mma.sync GEMM
  if (DequantFirst(p, true)) {
    auto dequant = [&](auto t, auto zp, unsigned blocks) {
      DequantInt4Kernel<typename decltype(t)::type, decltype(zp)::value>
          <<<blocks, kDequantThreads, 0, stream>>>(p, static_cast<uint4*>(scratch));
      return cudaGetLastError();
    };
    return RunDequantFirst(p, scratch, true, dequant, stream);
  }
  auto codes_map = [&](auto* b_op) {  // B_packed [N, K/8] uint32, boxes of 128 rows x 8 words
    return MakeTensorMap(&b_op->codes, CU_TENSOR_MAP_DATA_TYPE_UINT32, 4, p.b, p.n, p.k / 8, 1, kBlockN, kBlockK / 8,
                         CU_TENSOR_MAP_SWIZZLE_NONE);
  };
  return LaunchQuantGemm<Int4B>(p, splits, scratch, p.k / p.group_size, codes_map, stream);
}

}  // namespace kaio
