#!/usr/bin/env bash
# Runs every test of kernelbook on a fresh Debian/Ubuntu-like machine: installs what the tests need
# when it is missing (a software Vulkan driver and loader for the wgpu tests, Xvfb for the window
# tests, the NVRTC wheel for compiling CUDA kernels without a GPU), then `cargo test`.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for p in mesa-vulkan-drivers libvulkan1 xvfb; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_pkgs[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
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
  echo "test.sh: installing the NVRTC wheel (nvidia-cuda-nvrtc) to compile CUDA kernels without a GPU"
  "$python" -m pip install --quiet --disable-pip-version-check nvidia-cuda-nvrtc
  lib=$(nvrtc_lib) || { echo "test.sh: nvidia-cuda-nvrtc installed but libnvrtc not found" >&2; exit 1; }
fi
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# These make the tests fail instead of skip when the tools above are missing: the suite must really
# compile every kernel with NVRTC, run the wgpu engine on the software Vulkan adapter, and start the
# real window under Xvfb.
export KERNELBOOK_REQUIRE_NVRTC=1
export KERNELBOOK_REQUIRE_WGPU=1
export KERNELBOOK_REQUIRE_DISPLAY=1

cargo test "$@"
