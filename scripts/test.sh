#!/usr/bin/env bash
# Runs every check of kernelbook on a fresh Debian/Ubuntu-like machine: scripts/setup.sh installs what
# the tests need when it is missing, then `cargo fmt --check`, `cargo clippy --all-targets -D warnings`
# and `cargo test`.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

lib=$(scripts/setup.sh)
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# These make the tests fail instead of skip when the tools above are missing: the suite must really
# compile every kernel with NVRTC, run the wgpu engine on the software Vulkan adapter, and start the
# real window under Xvfb.
# Mesa's Vulkan driver prints a warning on every start without a runtime folder (a container, CI):
# give the test processes a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
fi
export KERNELBOOK_REQUIRE_NVRTC=1
export KERNELBOOK_REQUIRE_WGPU=1
export KERNELBOOK_REQUIRE_DISPLAY=1

echo "test.sh: cargo fmt --check"
cargo fmt --check
echo "test.sh: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
cargo test "$@"
