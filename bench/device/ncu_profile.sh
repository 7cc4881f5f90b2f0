#!/usr/bin/env bash
# On the GPU machine, after install.sh (bench/device/README.md): builds HEAD's source and profiles
# benchmark cases with Nsight Compute: per case one launch of the kernels matching NCU_KERNEL, with
# speed of light, warp states, occupancy, scheduler statistics, the stall reasons per issued
# instruction, DRAM bytes and executed instructions. Reports come back as $OUT/ncu_<n>.txt.
# Usage: NCU_KERNEL=Int4 bash bench/device/ncu_profile.sh quant:4:kaio:1x14336x4096 ...
# (case syntax: bench/profile_op.py). ncu locks the SM clock to its base (1.35 GHz on H100/H200
# SXM), so its durations are longer than the benchmarks' at boost clock.
set -uo pipefail
. bench/device/build_src.sh
export PATH=$PATH:/usr/local/cuda/bin
i=0
for c in "$@"; do
  f=$OUT/ncu_$i.txt; i=$((i + 1))
  ncu --target-processes all -k "regex:${NCU_KERNEL:-.}" --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --section SchedulerStats --section LaunchStats \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,dram__bytes_read.sum,smsp__inst_executed.sum" \
    python3 "$src/bench/profile_op.py" "$c" > "$f" 2>&1
  echo "== $c ($f)"
  grep -E "^  [A-Za-z].*\(|Duration|DRAM Throughput|Achieved Occupancy|Issued Warp|Eligible Warps|dram__bytes|inst_executed" "$f" | head -12
  grep -E "stalled_" "$f" | awk '$NF+0 > 0.3'
done
