// Column segments of one launch: up to three projections of the same A (QkvProjectInt4,
// QkvProjectInt8) whose column blocks run in turn along the grid's x (segment s owns blocks
// [first[s], first[s + 1])). Shared by the MatmulInt4 and MatmulInt8 kernels.
#pragma once

#include <cstdint>

namespace kaio {

// f_s with constant indices: a segment's field selected this way stays a kernel-parameter read (a
// runtime index into the parameters' segment array would copy them to local memory).
template <typename F>
__device__ __forceinline__ F Pick(int s, F f0, F f1, F f2) { return s == 0 ? f0 : s == 1 ? f1 : f2; }

// The segment x belongs to: the last of `count` whose first[s] <= x (first[0] == 0).
__device__ __forceinline__ int SegmentIndex(const int64_t* first, int count, int64_t x) {
  return (count > 1 && x >= first[1]) + (count > 2 && x >= first[2]);
}

}  // namespace kaio
