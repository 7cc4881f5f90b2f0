#!/usr/bin/env bash
# On the GPU machine, from the repository root of the carried tree, after install.sh of the
# onnxruntime-gpu wheel: builds HEAD's source (.device/src.tar), runs `pytest -m gpu`, the
# benchmarks and the SASS check, and leaves logs and result files in $OUT.
# Usage: bash bench/device/gpu_check.sh [pytest -k expression]
# KAIO_STEP_TIMEOUT (default 480 s) bounds the tests and each benchmark, so a kernel that hangs costs
# one step of a device call, not the call.
set -uo pipefail
. bench/device/build_src.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/device.txt"
cuobjdump -sass "$KAIO_ORT_LIBRARY" | grep -oE "\b(HMMA|HGMMA|IMMA|LDSM|LDGSTS|UTMALDG)[.A-Z0-9]*" | sort | uniq -c > "$OUT/sass_ops.txt"
cd "$src"
limit=${KAIO_STEP_TIMEOUT:-480}
# Standalone kernel probes first (KAIO_PROBES="wgmma_probe ..." names bench/device/<probe>.cu; its
# `// probe-sources:` line lists the sources it links): built for sm_90a (a stuck mbarrier wait traps:
# KAIO_MBAR_TIMEOUT) and run; KAIO_PROBE_AB="VAR=value"
# runs it again with that environment (an A/B switch such as KAIO_WGMMA_CLUSTER); KAIO_PROBE_SANITIZE=1 adds
# memcheck, racecheck and synccheck runs side by side with KAIO_PROBE_QUICK=1 (no speed shapes).
for probe in ${KAIO_PROBES:-}; do
  log="$OUT/$probe.log"
  if [[ -x $here/.device/probes/$probe && $(cat "$here/.device/probes/COMMIT" 2>/dev/null) == "$KAIO_COMMIT" ]]; then
    cp "$here/.device/probes/$probe" "/tmp/$probe" && echo "prebuilt $probe for $KAIO_COMMIT" >"$log"  # prepare.sh
  else
    nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -DKAIO_MBAR_TIMEOUT -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
      -I ort_ops -o "/tmp/$probe" "bench/device/$probe.cu" $(sed -n 's|^// probe-sources: ||p' "bench/device/$probe.cu") \
      >"$log" 2>&1 || { tail -20 "$log"; continue; }
  fi
  timeout "$limit" "/tmp/$probe" >>"$log" 2>&1; tail -3 "$log"
  if [[ -n ${KAIO_PROBE_AB:-} ]]; then
    echo "== again with $KAIO_PROBE_AB" >>"$log"; env $KAIO_PROBE_AB timeout "$limit" "/tmp/$probe" >>"$log" 2>&1; tail -2 "$log"
  fi
  if [[ -n ${KAIO_PROBE_SANITIZE:-} ]]; then
    for tool in memcheck racecheck synccheck; do
      KAIO_PROBE_QUICK=1 timeout "$limit" compute-sanitizer --tool $tool "/tmp/$probe" >"$OUT/${probe}_$tool.log" 2>&1 &
    done
    wait
    for tool in memcheck racecheck synccheck; do echo "$probe $tool: $(grep -hE 'SUMMARY|ALL OK|FAILURES' "$OUT/${probe}_$tool.log" | tr '\n' ' ')"; done
  fi
done
timeout -k 10 "$limit" python3 -m pytest -q -rfEs -m gpu tests ${1:+-k "$1"} 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
for b in ${KAIO_BENCH:-bench/bench_matmul_tc.py}; do  # an entry's arguments follow it after commas
  PYTHONUNBUFFERED=1 timeout -k 10 "$limit" python3 ${b//,/ } 2>&1 | tee -a "$OUT/bench.log" | tail -12
done
cp bench/results/*"${KAIO_COMMIT:0:8}"* "$OUT/" 2>/dev/null   # this run's results only (8 files come back)
if [[ -n ${KAIO_SANITIZE:-} ]]; then
  timeout ${KAIO_SANITIZE_TIMEOUT:-420} compute-sanitizer --tool memcheck --target-processes all python3 -m pytest -q -m gpu $KAIO_SANITIZE \
    >"$OUT/memcheck.log" 2>&1; tail -5 "$OUT/memcheck.log"
fi
if [[ -n ${KAIO_RACECHECK:-} ]]; then  # shared-memory races: KAIO_RACECHECK=tests/x.py, KAIO_RACECHECK_K="a or b"
  timeout ${KAIO_SANITIZE_TIMEOUT:-420} compute-sanitizer --tool racecheck --target-processes all python3 -m pytest -q -m gpu $KAIO_RACECHECK ${KAIO_RACECHECK_K:+-k "$KAIO_RACECHECK_K"} \
    >"$OUT/racecheck.log" 2>&1; tail -5 "$OUT/racecheck.log"
fi
# One summary file to commit under bench/results/: device, commit, test and sanitizer outcomes.
{
  echo "# GPU checks at commit $KAIO_COMMIT"; echo
  echo "device: $(cat "$OUT/device.txt") (name, driver, SM clock now, max SM clock); $(python3 -c 'import onnxruntime as o; print("onnxruntime-gpu", o.__version__)'); $(date -u +%FT%TZ)"
  for probe in ${KAIO_PROBES:-}; do
    echo; echo "## bench/device/$probe.cu"; echo '```'; grep -vE '^\s*$' "$OUT/$probe.log" | tail -40; echo '```'
    for tool in ${KAIO_PROBE_SANITIZE:+memcheck racecheck synccheck}; do
      echo "- under $tool (KAIO_PROBE_QUICK=1): $(grep -hE 'SUMMARY|ALL OK|FAILURES' "$OUT/${probe}_$tool.log" | tr '\n' ' ')"
    done
  done
  echo; echo "## pytest -m gpu tests"; echo '```'; tail -30 "$OUT/gpu_tests.log"; echo '```'
  if [[ -f $OUT/memcheck.log ]]; then
    echo; echo "## compute-sanitizer memcheck: pytest -m gpu $KAIO_SANITIZE"; echo '```'; grep -v '^\s*$' "$OUT/memcheck.log" | tail -4; echo '```'
  fi
  if [[ -f $OUT/racecheck.log ]]; then
    echo; echo "## compute-sanitizer racecheck: pytest -m gpu $KAIO_RACECHECK ${KAIO_RACECHECK_K:+-k \"$KAIO_RACECHECK_K\"}"; echo '```'; grep -v '^\s*$' "$OUT/racecheck.log" | tail -4; echo '```'
  fi
} > "$OUT/gpu_checks_${KAIO_COMMIT:0:8}.md"
# At most 8 files come back from a device call: the logs travel as one archive.
(cd "$OUT" && tar -czf logs.tgz build.log bench.log device.txt ${KAIO_SANITIZE:+memcheck.log} ${KAIO_RACECHECK:+racecheck.log} \
  $(ls *probe*.log 2>/dev/null) 2>/dev/null && rm -f build.log bench.log device.txt memcheck.log racecheck.log *probe*.log)
