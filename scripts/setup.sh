#!/usr/bin/env bash
# Installs what the tests need on a Debian/Ubuntu-like machine, when it is missing:
# - mesa-vulkan-drivers, libvulkan1: the lavapipe software Vulkan adapter and the Vulkan loader, so the
#   wgpu tests run for real without a GPU;
# - xvfb: a virtual display for the test that starts the real window;
# - the PyPI wheel nvidia-cuda-nvrtc: NVRTC, so every CUDA kernel is compiled in every test run, with no
#   GPU and no CUDA toolkit.
# Idempotent and quiet when nothing is missing; works as root or through sudo.
# Prints one line on stdout: the folder holding libnvrtc.so (scripts/test.sh adds it to
# LD_LIBRARY_PATH). Everything else goes to stderr.
# Usage: scripts/setup.sh            (PYTHON=... picks the Python that pip installs into)
set -euo pipefail

say() { echo "setup.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    say "need root (or sudo) to run: $*"
    return 1
  fi
}

need_pkgs=()
for p in mesa-vulkan-drivers libvulkan1 xvfb; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
# Run a command with its output kept in a log that is shown only if it fails.
quietly() {
  local log
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then
    rm -f "$log"
  else
    local rc=$?
    cat "$log" >&2
    rm -f "$log"
    say "failed ($rc): $*"
    return "$rc"
  fi
}

if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  quietly as_root apt-get update -qq
  quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

python=${PYTHON:-python3}
nvrtc_lib() {
  "$python" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(1)
for root in list(nvidia.__path__):
    hits = sorted(glob.glob(os.path.join(root, "cu*", "lib", "libnvrtc.so*")))
    if hits:
        print(os.path.dirname(hits[0])); raise SystemExit(0)
raise SystemExit(1)
PY
}
if ! lib=$(nvrtc_lib); then
  say "installing the NVRTC wheel (nvidia-cuda-nvrtc) to compile CUDA kernels without a GPU"
  PIP_ROOT_USER_ACTION=ignore quietly "$python" -m pip install --quiet --disable-pip-version-check nvidia-cuda-nvrtc
  lib=$(nvrtc_lib) || { say "nvidia-cuda-nvrtc installed but libnvrtc not found"; exit 1; }
fi
echo "$lib"
