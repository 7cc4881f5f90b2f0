#!/usr/bin/env bash
# Fetches ONNX Runtime's C/C++ headers (no PyPI wheel ships them) from Debian's
# libonnxruntime-dev package into a folder of the build tree. It reads the Debian mirror this
# machine is configured with, uses a private apt configuration (nothing is installed system-wide)
# and prints the include directory on its last line.
# Usage: fetch_ort_headers.sh DEST_DIR [SUITE...]   (suites tried in order; default: sid trixie)
set -euo pipefail
dest=$1; shift
suites=("$@"); [[ ${#suites[@]} -gt 0 ]] || suites=(sid trixie)
if [[ -f $dest/include/onnxruntime/onnxruntime_c_api.h ]]; then echo "$dest/include/onnxruntime"; exit 0; fi
command -v apt-get >/dev/null || { echo "fetch_ort_headers: apt-get not found; set ONNXRUNTIME_INCLUDE_DIR" >&2; exit 1; }

mirror=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || mirror=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
[[ -n $mirror ]] || { echo "fetch_ort_headers: no Debian mirror configured in /etc/apt; set ONNXRUNTIME_INCLUDE_DIR" >&2; exit 1; }

work=$dest/apt; mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$work/lists"
      -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1)
[[ $(id -u) -eq 0 ]] && opts+=(-o APT::Sandbox::User=root)
for suite in "${suites[@]}"; do
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  echo "deb [signed-by=$keyring] $mirror $suite main" > "$work/sources.list"
  apt-get "${opts[@]}" update -qq >&2 || continue
  (cd "$work" && rm -f libonnxruntime-dev_*.deb && apt-get "${opts[@]}" download libonnxruntime-dev >&2) || continue
  dpkg -x "$work"/libonnxruntime-dev_*.deb "$work/root"
  mkdir -p "$dest/include"
  cp -r "$work/root/usr/include/onnxruntime" "$dest/include/"
  echo "fetch_ort_headers: $(basename "$work"/libonnxruntime-dev_*.deb) from $mirror ($suite)" >&2
  echo "$dest/include/onnxruntime"
  exit 0
done
echo "fetch_ort_headers: libonnxruntime-dev not found in suites ${suites[*]} of $mirror" >&2
exit 1
