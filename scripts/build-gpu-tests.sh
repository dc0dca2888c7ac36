#!/usr/bin/env bash
# Builds the integration test binary (tests/integration: its cuda_engine, gumbel, rope and
# tensor_parallel modules exercise CUDA when a GPU is present) in release mode and copies it to
# target/gpu-tests/, so scripts/gpu-check.sh can run those modules on a GPU machine that has no Rust
# toolchain (carry target/gpu-tests with the kernelbook binary). Stripped of debug info to keep it
# small. Then carry target/gpu-tests and target/release/kernelbook (stripped here).
# Usage: scripts/build-gpu-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(integration)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
mkdir -p target/gpu-tests
rm -f target/gpu-tests/*
cargo test --release --no-run --message-format=json "${args[@]}" 2>/dev/null \
  | python3 -c '
import json, sys, shutil, os
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        dst = os.path.join("target/gpu-tests", m["target"]["name"])
        shutil.copy(m["executable"], dst)
        print(dst)
'
strip target/gpu-tests/* 2>/dev/null || true
# The app too (if built): the device tool carries at most 64 MiB, and the unstripped binary plus the
# tests would not fit. `cargo build --release` relinks it only when the sources change.
if [ -x target/release/kernelbook ]; then strip target/release/kernelbook 2>/dev/null || true; fi
ls -la target/gpu-tests target/release/kernelbook 2>/dev/null || true
du -ch target/gpu-tests/* target/release/kernelbook 2>/dev/null | tail -n 1
