#!/usr/bin/env bash
# On a GPU machine with two GPUs (device kind nvidia-h200-x2), after install.sh of the onnxruntime-gpu
# wheel: builds HEAD's source (.device/src.tar), runs tests/test_multi_gpu.py while nvidia-smi samples
# both GPUs, and leaves a summary file (and logs) in $OUT to commit under bench/results/.
set -uo pipefail
. bench/device/build_src.sh
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader -lms 200 > "$OUT/smi.csv" &
smi=$!
cd "$src"
python3 -m pytest -q -rA -s tests/test_multi_gpu.py 2>&1 | tee "$OUT/multi_gpu_tests.log" | tail -20
# With the decoder models carried (KAIO_DECODER_DIR, bench/device/README.md): the decoder on GPU 0,
# original vs rewritten, then one request stream per GPU.
if [[ -n ${KAIO_DECODER_DIR:-} ]]; then
  for b in bench/bench_decoder.py bench/bench_decoder_two_gpus.py; do
    PYTHONUNBUFFERED=1 python3 "$b" 2>&1 | tee -a "$OUT/bench.log" | tail -8
  done
  cp bench/results/*decoder*"${KAIO_COMMIT:0:8}"*.{md,json} "$OUT/" 2>/dev/null
fi
kill $smi 2>/dev/null
busy=$(awk -F', ' '{gsub(/ %/,"",$3); if ($3+0 > 0) seen[$2]=1} END {for (g in seen) printf "%s ", g}' "$OUT/smi.csv")
{
  echo "# Multi-GPU checks at commit $KAIO_COMMIT"; echo
  echo "devices:"; sed 's/^/- /' "$OUT/device.txt"
  echo; echo "$(python3 -c 'import onnxruntime as o; print("onnxruntime-gpu", o.__version__)'); $(date -u +%FT%TZ)"
  echo; echo "GPUs with non-zero utilization in nvidia-smi samples (every 200 ms) during the tests: ${busy:-none}"
  echo; echo "## pytest tests/test_multi_gpu.py"; echo '```'; tail -30 "$OUT/multi_gpu_tests.log"; echo '```'
} > "$OUT/multi_gpu_checks_${KAIO_COMMIT:0:8}.md"
(cd "$OUT" && tar -czf logs.tgz build.log device.txt smi.csv $(ls bench.log 2>/dev/null) && rm -f build.log device.txt bench.log smi.csv)
