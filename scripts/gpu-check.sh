#!/usr/bin/env bash
# The GPU machine's check, in one go (see docs/gpu.md): the engines found, `kernelbook check` on
# every engine (4096x32000 included on a real GPU), a second opinion from PyTorch on the same
# inputs, the prebuilt GPU test binaries if present (scripts/build-gpu-tests.sh), `kernelbook bench`
# and the torch timing anchors measured in the same call, and the throughput ratios against the GPU
# targets of docs/performance.md, printed last. Logs go to the folder given as $1 (or $OUT).
# Needs: a built kernelbook binary (target/release/kernelbook, or $KERNELBOOK), python3 with numpy
# (torch optional: without it the torch comparison is skipped with a message).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
bin=${KERNELBOOK:-target/release/kernelbook}
[ -x "$bin" ] || { echo "gpu-check: no binary at $bin (build with cargo build --release)" >&2; exit 2; }

status=0
step() { echo; echo "== $*"; }

step "backends"
"$bin" backends | tee "$out/backends.txt"
"$bin" backends --json > "$out/backends.json"
# This script is for a machine with an NVIDIA GPU: an absent CUDA engine is a failure here.
if ! python3 -c 'import json,sys; sys.exit(0 if any(b["engine"] == "cuda" and b["available"] for b in json.load(open(sys.argv[1]))) else 1)' "$out/backends.json"; then
  echo "gpu-check: the cuda engine is absent on this machine (see backends above)"
  status=1
fi

summary=()
for engine in cuda wgpu cpu; do
  step "check --engine $engine"
  start=$(date +%s.%N)
  KERNELBOOK_REQUIRE_CUDA=1 "$bin" check --engine "$engine" > "$out/check-$engine.txt" 2> "$out/check-$engine.err"
  rc=$?
  secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  cat "$out/check-$engine.err" "$out/check-$engine.txt" | grep -v '^  ' | tail -n 60
  [ $rc -eq 0 ] || status=1
  summary+=("$(printf '%-6s exit %d  %-44s %6ss' "$engine" "$rc" "$(tail -n 1 "$out/check-$engine.txt")" "$secs")")
done
"$bin" check --engine all --json > "$out/check-all.json" 2> /dev/null || status=1

step "torch comparison"
if python3 scripts/torch_compare.py "$bin" "$out" > "$out/torch.txt" 2> "$out/torch.err"; then
  cat "$out/torch.txt"
else
  cat "$out/torch.txt" "$out/torch.err"
  status=1
fi

# The GPU tests of the Rust test suite, built on a machine with Rust by scripts/build-gpu-tests.sh
# (the GPU machine has no toolchain): they compare the fast kernels with the simple ones bit for
# bit where they must agree, and run every topic's CUDA tests with a device present.
# The integration binary holds every area's tests; these are the ones with CUDA parts.
gpu_areas=(cuda_engine gumbel rope tensor_parallel suite)
if [ -x target/gpu-tests/integration ]; then
  t=target/gpu-tests/integration
  for area in "${gpu_areas[@]}"; do
    step "GPU tests: $area"
    KERNELBOOK_REQUIRE_CUDA=1 "$t" --test-threads 1 "$area::" > "$out/test-$area.txt" 2>&1
    rc=$?
    grep -E '^test |test result|panicked' "$out/test-$area.txt" | tail -n 40
    [ $rc -eq 0 ] || status=1
    summary+=("$(printf '%-24s exit %d  %s' "$area" "$rc" "$(grep 'test result' "$out/test-$area.txt" | tail -n 1)")")
  done
else
  step "GPU tests: none built (scripts/build-gpu-tests.sh builds them where Rust is)"
fi

step "bench (cuda, wgpu, cpu)"
"$bin" bench --json > "$out/bench.json" 2> "$out/bench.err" || status=1
python3 scripts/bench_ratios.py --table "$out/bench.json" | tee "$out/bench.txt"

# The fast WGSL softmax caps its workgroups to keep ~32 MiB of rows in flight (so the second read
# of a row hits the L2); that cap is reasoning, not a measurement: sweep it once (empty = the rule,
# 0 = one workgroup per row).
step "wgpu softmax workgroup sweep (KERNELBOOK_WGPU_SOFTMAX_WORKGROUPS)"
for g in "" 0 132 264 528 1056; do
  printf 'workgroups=%-6s ' "${g:-rule}"
  KERNELBOOK_WGPU_SOFTMAX_WORKGROUPS=$g "$bin" bench --engine wgpu --op softmax --size 4096x32000 --json 2>/dev/null \
    | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin)["results"] if x["dtype"]=="f32" and x.get("kernel")=="fast"]; print("%.0f us, %.0f%% of copy" % (r[0]["median_us"], r[0]["percent_of_copy"] or 0) if r else "no result")' \
    | tee -a "$out/wgpu-sweep.txt"
done

step "torch timing anchors (same GPU, same call)"
python3 scripts/torch_bench.py "$out/torch-bench.json" > "$out/torch-bench.txt" 2>&1 || status=1
cat "$out/torch-bench.txt"

step "summary (logs in $out)"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
tail -n 3 "$out/torch.txt" | tee -a "$out/summary.txt"
python3 scripts/bench_ratios.py "$out/bench.json" "$out/torch-bench.json" | tee -a "$out/summary.txt"
exit $status
