#!/usr/bin/env bash
# On the GPU machine, after install.sh of the onnxruntime-gpu wheel: builds HEAD's source, then runs
# `pytest -m gpu` under compute-sanitizer, each tool's run of the suite split into shards
# (tests/conftest.py KAIO_TEST_SHARD, round robin) that run side by side over the machine's GPUs: a
# sanitized run is bound by the host, not the GPU. Only our kernels are instrumented (--kernel-name
# kns=kaio: namespace kaio); ORT's and cuBLAS's kernels run as usual. test_threads.py (its 10,000-run
# stress) is left to the plain run. With KAIO_PLAIN=1 the plain suite (every GPU visible: the
# two-GPU tests run first, alone, as they read whole-GPU memory use; KAIO_LARGE_TESTS passes
# through) runs at the same time. KAIO_SAN_SHARD_LIST="1 5" runs only those shards (a rerun of the
# shards that did not finish in time, split finer: shard i of n is shards i, i+n, ... of 2n, 3n, ...).
# Writes sanitizers_<commit>.md (and gpu_checks_<commit>.md with KAIO_PLAIN) and logs.tgz to $OUT.
# Usage: KAIO_SAN_TOOLS="memcheck racecheck synccheck" KAIO_SAN_SHARDS=8 KAIO_SAN_TIMEOUT=450 \
#        bash bench/device/sanitize.sh [pytest -k expression]
set -uo pipefail
. bench/device/build_src.sh
tools=${KAIO_SAN_TOOLS:-memcheck racecheck synccheck}
shards=${KAIO_SAN_SHARDS:-8}
limit=${KAIO_SAN_TIMEOUT:-450}
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader > "$OUT/device.txt"
mkdir -p "$OUT/san"
cd "$src"
# Many processes share the host: BLAS and ORT (tests/op_harness.session_options) one thread each.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 KAIO_TEST_ORT_THREADS=1
pids=()
list=${KAIO_SAN_SHARD_LIST:-$(seq 0 $((shards - 1)))}
if [[ -n ${KAIO_PLAIN:-} ]]; then
  python3 -m pytest -q -rfEs -m gpu tests/test_multi_gpu.py ${1:+-k "$1"} >"$OUT/gpu_tests.log" 2>&1
  timeout -s INT -k 30 "$limit" python3 -m pytest -q -rfEs -m gpu tests --ignore=tests/test_multi_gpu.py \
    ${1:+-k "$1"} >>"$OUT/gpu_tests.log" 2>&1 &
  pids+=($!)
fi
job=0
for tool in $tools; do
  for i in $list; do
    CUDA_VISIBLE_DEVICES=$((job % gpus)) KAIO_TEST_SHARD=$i/$shards timeout -s INT -k 30 "$limit" \
      compute-sanitizer --tool "$tool" --kernel-name kns=kaio --target-processes all \
      python3 -m pytest -q -rfEs -m gpu tests --ignore=tests/test_threads.py -p no:cacheprovider ${1:+-k "$1"} \
      >"$OUT/san/$tool.$i.log" 2>&1 &
    pids+=($!)
    job=$((job + 1))
  done
done
for p in "${pids[@]}"; do wait "$p"; done
cd "$OUT"
{
  echo "# compute-sanitizer over pytest -m gpu at commit $KAIO_COMMIT"; echo
  echo "devices:"; sed 's/^/- /' device.txt
  echo; echo "$(python3 -c 'import onnxruntime as o; print("onnxruntime-gpu", o.__version__)'); $(compute-sanitizer --version | tail -1); $(date -u +%FT%TZ)"
  echo; echo "Each tool: the GPU tests (tests/, marker gpu, test_threads.py left out${1:+, -k \"$1\"}) in $shards shards run"
  echo "side by side, $limit s each at most; kernels instrumented: ours (--kernel-name kns=kaio)."
  for tool in $tools; do
    echo; echo "## $tool"; echo; echo "| shard | pytest | sanitizer summary | error reports |"; echo "|---|---|---|---|"
    for i in $list; do
      log=san/$tool.$i.log
      result=$(grep -E "^(=+ )?[0-9]+ (passed|failed)|no tests ran|Interrupted|KeyboardInterrupt" "$log" | tail -1 | tr -d '=')
      summary=$(grep -E "(ERROR|RACECHECK) SUMMARY" "$log" | tail -1 | sed 's/^=* *//')
      reports=$(grep -E "^========= " "$log" | grep -vcE "COMPUTE-SANITIZER|SUMMARY|^========= *$|^=========     ")
      echo "| $i/$shards | ${result:-did not finish} | ${summary:-none (stopped)} | $reports |"
    done
  done
  if [[ -n ${KAIO_PLAIN:-} ]]; then echo; echo "Plain run alongside: gpu_checks_${KAIO_COMMIT:0:8}.md"; fi
} > "sanitizers_${KAIO_COMMIT:0:8}.md"
if [[ -n ${KAIO_PLAIN:-} ]]; then
  {
    echo "# GPU checks at commit $KAIO_COMMIT"; echo
    echo "devices: $(paste -sd';' device.txt); KAIO_LARGE_TESTS=${KAIO_LARGE_TESTS:-0}; $(date -u +%FT%TZ)"
    echo "(run alongside the sanitizer shards of sanitizers_${KAIO_COMMIT:0:8}.md: timings are not clean)"
    echo; echo "## pytest -m gpu tests/test_multi_gpu.py, then the rest${1:+ (-k \"$1\")}"; echo '```'
    grep -E "passed|failed|^FAILED|^ERROR" gpu_tests.log; echo '```'
    echo; echo "## the rest's last lines"; echo '```'; tail -25 gpu_tests.log; echo '```'
  } > "gpu_checks_${KAIO_COMMIT:0:8}.md"
fi
cat "sanitizers_${KAIO_COMMIT:0:8}.md"
tar -czf logs.tgz build.log device.txt san $(ls gpu_tests.log 2>/dev/null) && rm -rf build.log device.txt san
