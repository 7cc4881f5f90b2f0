#!/usr/bin/env bash
# On the development machine: packs what the GPU machine needs into .device/ (git-ignored):
#   .device/src.tar      the committed tree at REV (default HEAD; the GPU run tests exactly what is committed)
#   .device/ort-include  ONNX Runtime's C headers (the GPU machine reaches no package mirror)
#   .device/wheel/p0..pN the onnxruntime-gpu wheel in parts small enough to travel beside the tracked
#                        tree (a call carries at most 64 MiB: tree + one part), install.sh in the last
#   .device/lib          with KAIO_PREBUILD=1: libkaio_ort_ops.so built here for sm_90a (a few minutes
#                        of this machine's CPU instead of ~80 s of device time), used by build_src.sh
#                        when its COMMIT matches
# Then one device call per part, one right after the other, and the run (bench/device/README.md).
# Usage: bench/device/prepare.sh [REV]
set -euo pipefail
top=$(git rev-parse --show-toplevel); cd "$top"
rev=${1:-HEAD}
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
mkdir -p .device
git archive -o .device/src.tar "$rev"
git rev-parse "$rev" > .device/COMMIT
if [[ ! -f .device/ort-include/onnxruntime_c_api.h ]]; then
  inc=$(cmake/fetch_ort_headers.sh "$top/.device/ort-headers" | tail -n1)
  rm -rf .device/ort-include && cp -r "$inc" .device/ort-include
fi
# The wheel (../shared/device/ort-gpu-wheel: four parts in .device/ort), re-split into .device/wheel so
# that each part travels beside the device calls' tree: the checkout's tracked files + 1 MiB margin.
if [[ -x ../shared/device/ort-gpu-wheel ]]; then
  ../shared/device/ort-gpu-wheel >/dev/null
  tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
  part=$(( 64 * 1024 * 1024 - tree - 1024 * 1024 ))
  whl=$(awk '{print $2}' .device/ort/p3/SHA256)
  rm -rf .device/wheel && mkdir -p .device/wheel/all
  cp .device/ort/p3/SHA256 .device/ort/p3/install.sh .device/wheel/all/
  cat .device/ort/p*/part.* > ".device/wheel/all/$whl"
  (cd .device/wheel/all && sha256sum -c --quiet SHA256 && split -b "$part" -d -a 2 "$whl" part. && rm "$whl")
  n=$(ls .device/wheel/all/part.* | wc -l)
  for ((i = 0; i < n; i++)); do mkdir -p .device/wheel/p$i && mv ".device/wheel/all/part.$(printf %02d $i)" .device/wheel/p$i/; done
  mv .device/wheel/all/SHA256 .device/wheel/all/install.sh .device/wheel/p$((n - 1))/ && rmdir .device/wheel/all
  echo "onnxruntime-gpu wheel in $n parts of <= $part bytes beside a $tree-byte tree: carry .device/wheel/p0 .. p$((n - 1)) (one a call), the last running install.sh"
fi
if [[ -n ${KAIO_PREBUILD:-} ]]; then
  b=/tmp/kaio-prebuilt; rm -rf "$b" .device/lib; mkdir -p "$b/src" .device/lib
  tar -xf .device/src.tar -C "$b/src"
  cmake -S "$b/src" -B "$b/build" -G Ninja -DONNXRUNTIME_INCLUDE_DIR="$top/.device/ort-include" \
    -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null && ninja -C "$b/build" >/dev/null
  cp "$b/build/libkaio_ort_ops.so" .device/lib/ && cp .device/COMMIT .device/lib/COMMIT
  echo "prebuilt .device/lib/libkaio_ort_ops.so (sm_90a) for $(cat .device/COMMIT)"
  # The probes named in KAIO_PROBES (default wgmma_probe), as gpu_check.sh would build them there.
  rm -rf .device/probes && mkdir -p .device/probes
  for probe in ${KAIO_PROBES:-wgmma_probe}; do
    (cd "$b/src" && nvcc -std=c++17 -O2 -DKAIO_HAS_SM90A -DKAIO_MBAR_TIMEOUT -gencode arch=compute_90a,code=sm_90a \
      --expt-relaxed-constexpr -I ort_ops -o "$top/.device/probes/$probe" "bench/device/$probe.cu" \
      $(sed -n 's|^// probe-sources: ||p' "bench/device/$probe.cu"))
  done
  cp .device/COMMIT .device/probes/COMMIT
  echo "prebuilt probes in .device/probes: ${KAIO_PROBES:-wgmma_probe}"
fi
echo "prepared .device for commit $(cat .device/COMMIT)"
