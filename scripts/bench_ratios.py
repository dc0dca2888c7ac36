#!/usr/bin/env python3
"""The GPU targets of docs/performance.md as measured ratios, from one run on one GPU:
kernelbook bench --json (BENCH.json) and torch_bench.py's anchors (TORCH.json). Prints one line per
target: measured, target, met or not.
Usage: bench_ratios.py BENCH.json TORCH.json
       bench_ratios.py --table BENCH.json   (the results as a table)"""
import json
import sys

if sys.argv[1] == "--table":
    # The bench results as a table (gpu-check runs the bench once, as JSON).
    doc = json.load(open(sys.argv[2]))
    print(f"{'engine':6} {'case':52} {'median':>12} {'GB/s':>9} {'copy GB/s':>10} {'% of copy':>9}")
    for r in doc.get("results", []):
        copy = r.get("copy_gb_per_s")
        pct = r.get("percent_of_copy")
        print(f"{r['engine']:6} {r['case']:52} {r['median_us']:9.1f} us {r['gb_per_s']:9.1f} "
              f"{'-' if copy is None else f'{copy:.1f}':>10} {'-' if pct is None else f'{pct:.0f}%':>9}")
    devices = sorted({f"{r['engine']:5} {r['device']}" for r in doc.get("results", [])})
    print("\n".join(devices))
    for f in doc.get("failures", []):
        print(f"FAIL {f}")
    sys.exit(0)

bench = json.load(open(sys.argv[1]))
torch = json.load(open(sys.argv[2]))
rows = bench.get("results", [])


def find(engine, op, dtype=None, contains=None, kernel="fast"):
    """The result of one case; `kernel` "fast" also accepts ops with one kernel (None)."""
    for r in rows:
        if r["engine"] == engine and r["op"] == op and (dtype is None or r["dtype"] == dtype) \
                and (contains is None or contains in r["case"]) \
                and r.get("kernel") in (kernel, None if kernel == "fast" else kernel):
            return r
    return None


def line(what, value, target, unit=""):
    if value is None:
        print(f"{what:58} not measured")
        return
    ok = "met" if value >= target else "NOT met"
    print(f"{what:58} {value:8.2f}{unit}  target >= {target}{unit}  {ok}")


if "error" in torch:
    print(f"torch anchors missing: {torch['error']}")
dev = torch.get("device", "?")
print(f"device: {dev}; torch copy {torch.get('copy_gb_per_s', float('nan')):.0f} GB/s")
for dt in ["f32", "f16", "bf16"]:
    r = find("cuda", "softmax", dt, "4096x32000")
    t = torch.get(f"softmax_{dt}_us")
    line(f"softmax {dt} [4096,32000]: torch time / kernelbook time", t / r["median_us"] if r and t else None, 1.3, "x")
r = find("cuda", "gumbel_softmax")
line("gumbel_softmax hard f32: % of copy bandwidth", r and r.get("percent_of_copy"), 75, "%")
r = find("cuda", "rope")
t = torch.get("rope_f16_compiled_us")
line("rope half-split f16 q,k: torch.compile time / kernelbook", t / r["median_us"] if r and t else None, 1.0, "x")
r = find("cuda", "vocab_parallel_cross_entropy")
t = torch.get("cross_entropy_f32_us")
line("vocab_parallel_cross_entropy k=1 [8192,50304]: torch / kernelbook", t / r["median_us"] if r and t else None, 2.0, "x")
r = find("wgpu", "softmax", "f32")
line("wgpu softmax f32: % of copy bandwidth (NVIDIA Vulkan)", r and r.get("percent_of_copy"), 60, "%")

# For the record: how much the fast kernels gain over the simple ones, on each GPU engine.
print("")
print("fast vs simple kernel, same run (time of simple / time of fast):")
for engine in ["cuda", "wgpu"]:
    for r in rows:
        if r["engine"] != engine or r.get("kernel") != "fast":
            continue
        simple = find(engine, r["op"], r["dtype"], None, kernel="simple")
        if simple and simple["shape"] == r["shape"]:
            pct = r.get("percent_of_copy")
            pct = f"{pct:.0f}% of copy" if pct is not None else ""
            print(f"  {engine:5} {r['case']:52} {simple['median_us'] / r['median_us']:6.2f}x  {pct}")
