#!/usr/bin/env bash
# On the development machine: packs what the GPU machine needs into .device/ (git-ignored):
#   .device/src.tar      the committed tree at HEAD (the GPU run tests exactly what is committed)
#   .device/ort-include  ONNX Runtime's C headers (the GPU machine reaches no package mirror)
#   .device/ort/p0..p3   the onnxruntime-gpu wheel in four parts (../shared/device/ort-gpu-wheel)
# Then four device calls, one right after the other (bench/device/README.md).
set -euo pipefail
top=$(git rev-parse --show-toplevel); cd "$top"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
mkdir -p .device
git archive -o .device/src.tar HEAD
git rev-parse HEAD > .device/COMMIT
if [[ ! -f .device/ort-include/onnxruntime_c_api.h ]]; then
  inc=$(cmake/fetch_ort_headers.sh "$top/.device/ort-headers" | tail -n1)
  rm -rf .device/ort-include && cp -r "$inc" .device/ort-include
fi
[[ -x ../shared/device/ort-gpu-wheel ]] && ../shared/device/ort-gpu-wheel >/dev/null
echo "prepared .device for commit $(cat .device/COMMIT)"
