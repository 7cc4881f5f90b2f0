#!/usr/bin/env bash
# On the GPU machine: runs a device script (default bench/device/gpu_check.sh) under a time limit a
# little below the call's, then packs everything in $OUT into one archive (the markdown summaries also
# stay beside it), so that what ran comes back (at most 8 files return from a call) even when the limit
# cut it short.
# Usage: KAIO_CALL_LIMIT=560 bash bench/device/bounded.sh [gpu_check.sh arguments]
#        KAIO_SCRIPT=bench/device/ncu_profile.sh bash bench/device/bounded.sh dense:f16:ort:16x4096x4096
timeout -k 5 "${KAIO_CALL_LIMIT:-560}" bash "${KAIO_SCRIPT:-bench/device/gpu_check.sh}" "$@"
echo "exit status $? (124: the limit)"
cd "$OUT" || exit 1
tar -czf all.tgz --exclude=all.tgz . 2>/dev/null  # everything, result files too (JSON, PNG)
for f in *; do case "$f" in all.tgz | *.md) ;; *) rm -rf "$f" ;; esac; done  # summaries stay readable
ls "$OUT"
