#!/usr/bin/env python3
"""Second opinion for scripts/gpu-check.sh: run each op through kernelbook (`kernelbook run`, every
engine present) and through PyTorch on the same inputs, and print how far each is from the float64
reference. Usage: torch_compare.py KERNELBOOK_BIN OUT_DIR. Needs numpy; torch is optional."""
import json
import os
import subprocess
import sys

import numpy as np

bin_path, out_dir = sys.argv[1], sys.argv[2]
work = os.path.join(out_dir, "torch-npy")
os.makedirs(work, exist_ok=True)

try:
    import torch
    dev = "cuda" if torch.cuda.is_available() else "cpu"
except Exception as e:  # noqa: BLE001 - any import problem means "no torch here"
    torch = None
    print(f"torch unavailable ({e}); comparing kernelbook engines with the reference only")

backends = json.loads(subprocess.run([bin_path, "backends", "--json"], capture_output=True, text=True, check=True).stdout)
engines = [b["engine"] for b in backends if b["available"]]

rng = np.random.default_rng(2718)
shape = (64, 4096)
inputs = {
    "logit": rng.uniform(0.0, 1.0, shape).astype(np.float32),
    "sigmoid": rng.normal(0, 4, shape).astype(np.float32),
    "logsigmoid": rng.normal(0, 8, shape).astype(np.float32),
    "softmax": rng.normal(0, 3, shape).astype(np.float32),
    "log_softmax": rng.normal(0, 3, shape).astype(np.float32),
}
np_dtypes = {"f32": np.float32, "f16": np.float16, "bf16": None}


def torch_op(op, x, t):
    if op == "logit":
        return torch.logit(x)
    if op == "sigmoid":
        return torch.sigmoid(x)
    if op == "logsigmoid":
        return torch.nn.functional.logsigmoid(x)
    if op == "softmax":
        return torch.softmax(x / t, dim=-1)
    return torch.log_softmax(x / t, dim=-1)


def err(got, ref):
    got = got.astype(np.float64)
    finite = np.isfinite(ref) & np.isfinite(got)
    d = np.abs(got - ref)[finite]
    r = d / np.maximum(np.abs(ref[finite]), 1e-30)
    # Relative error where it means something: values above 1e-3 (tiny probabilities are judged by
    # their absolute error, as kernelbook's check does).
    big = np.abs(ref[finite]) > 1e-3
    return (d.max() if d.size else 0.0, r[big].max() if big.any() else 0.0, int((~np.isfinite(got)).sum()))


def run(args):
    p = subprocess.run([bin_path, "run", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return p.stderr


rows = []
for op, x in inputs.items():
    for t in ([1.0, 0.5] if op in ("softmax", "log_softmax") else [None]):
        for dt in ["f32", "f16", "bf16"]:
            xin = os.path.join(work, f"{op}-{dt}.npy")
            # Round the input to the dtype once, so every engine and torch see the same values.
            if dt == "bf16" and torch is not None:
                xr = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
            elif dt == "f16":
                xr = x.astype(np.float16).astype(np.float32)
            else:
                xr = x
            np.save(xin, xr)
            params = ["-p", f"dtype={dt}"] + (["-p", f"temperature={t}"] if t else [])
            ref_path = os.path.join(work, f"{op}-{dt}-ref.npy")
            run([op, "-i", xin, "--engine", "reference", "-o", ref_path, *params])
            ref = np.load(ref_path)
            name = f"{op}{'' if t is None else f' T={t}'}"
            for e in engines:
                y_path = os.path.join(work, f"{op}-{dt}-{e}.npy")
                try:
                    msg = run([op, "-i", xin, "--engine", e, "-o", y_path, *params])
                    kernel = msg.split("kernel ")[1].split(" us")[0] if "kernel " in msg else "?"
                    a, r, nf = err(np.load(y_path), ref)
                    rows.append((name, dt, f"kernelbook {e}", a, r, nf, kernel))
                except RuntimeError as ex:
                    rows.append((name, dt, f"kernelbook {e}", float("nan"), float("nan"), -1, str(ex)[:40]))
            if torch is not None:
                tdt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dt]
                xt = torch.from_numpy(xr).to(dev).to(tdt)
                y = torch_op(op, xt, t).float().cpu().numpy()
                a, r, nf = err(y, ref)
                rows.append((name, dt, f"torch {dev}", a, r, nf, ""))

print(f"{'op':<16} {'dtype':<5} {'who':<18} {'max abs':>10} {'max rel':>10} {'nonfinite':>9}  kernel us")
for name, dt, who, a, r, nf, k in rows:
    print(f"{name:<16} {dt:<5} {who:<18} {a:>10.2e} {r:>10.2e} {nf:>9}  {k}")
worst = {}
for name, dt, who, a, r, nf, k in rows:
    worst[who] = max(worst.get(who, 0.0), r if r == r else float("inf"))
print("worst max rel vs f64 reference over |ref| > 1e-3 (inputs [64,4096], all ops and dtypes):")
print("  " + "  ".join(f"{w}: {v:.2e}" for w, v in sorted(worst.items())))
