# Sourced by the device scripts (gpu_check.sh, multi_gpu_check.sh), from the repository root of the
# carried tree: onnxruntime-gpu's environment, HEAD's source (.device/src.tar) built into
# /tmp/kaio-build, and KAIO_COMMIT, KAIO_ORT_LIBRARY, PYTHONPATH, src set for what follows.
here=$PWD
. /tmp/ort-env.sh
src=/tmp/kaio-src; rm -rf "$src"; mkdir -p "$src"; tar -xf .device/src.tar -C "$src"
export KAIO_COMMIT=$(cat .device/COMMIT)
if [[ -f .device/lib/libkaio_ort_ops.so && $(cat .device/lib/COMMIT 2>/dev/null) == "$KAIO_COMMIT" ]]; then
  # built on the development machine for sm_90a (prepare.sh with KAIO_PREBUILD=1): no device-side build
  mkdir -p /tmp/kaio-build && cp .device/lib/libkaio_ort_ops.so /tmp/kaio-build/
  echo "prebuilt library for $KAIO_COMMIT (sm_90a)" >"$OUT/build.log"
else
  cmake -S "$src" -B /tmp/kaio-build -G Ninja -DONNXRUNTIME_INCLUDE_DIR="$here/.device/ort-include" >"$OUT/build.log" 2>&1 \
    && ninja -C /tmp/kaio-build >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi
export KAIO_ORT_LIBRARY=/tmp/kaio-build/libkaio_ort_ops.so PYTHONPATH=$src/python:$PYTHONPATH
