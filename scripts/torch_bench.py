#!/usr/bin/env python3
"""Torch anchors for scripts/gpu-check.sh, measured in the same run as `kernelbook bench` so the
ratios compare like with like (docs/gpu.md, docs/performance.md): a device-to-device copy, torch.softmax fp32/f16/bf16
[4096, 32000], F.gumbel_softmax(hard) fp32 [4096, 32000], HF Llama apply_rotary_pos_emb f16 q and k
[8, 32, 4096, 128] eager and under torch.compile, F.cross_entropy fp32 [8192, 50304].
Median of 50 with CUDA events. Usage: torch_bench.py OUT.json. Needs torch with CUDA; transformers
optional (without it the rope anchor uses the same rotate_half formula written out)."""
import json
import sys


def main():
    out_path = sys.argv[1]
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"torch unavailable: {e}")
        json.dump({"error": f"torch unavailable: {e}"}, open(out_path, "w"))
        return 0
    if not torch.cuda.is_available():
        print("torch sees no CUDA device")
        json.dump({"error": "no CUDA device"}, open(out_path, "w"))
        return 0
    dev = "cuda"

    def median_us(fn, runs=50, warmup=5):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        times.sort()
        return times[len(times) // 2]

    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    n = 1 << 28  # 1 GiB of fp32
    src = torch.empty(n, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    us = median_us(lambda: dst.copy_(src))
    res["copy_gb_per_s"] = 2 * 4 * n / (us * 1e-6) / 1e9
    del src, dst

    for name, dt in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
        x = torch.randn(4096, 32000, device=dev).to(dt)
        us = median_us(lambda: torch.softmax(x, -1))
        res[f"softmax_{name}_us"] = us
        res[f"softmax_{name}_gb_per_s"] = 2 * x.numel() * x.element_size() / (us * 1e-6) / 1e9
    x = torch.randn(4096, 32000, device=dev)
    res["gumbel_softmax_hard_f32_us"] = median_us(lambda: F.gumbel_softmax(x, tau=0.5, hard=True))

    q = torch.randn(8, 32, 4096, 128, device=dev, dtype=torch.float16)
    k = torch.randn_like(q)
    inv = 1.0 / (10000 ** (torch.arange(0, 128, 2, device=dev).float() / 128))
    freqs = torch.outer(torch.arange(4096, device=dev).float(), inv)
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos().to(q.dtype)[None, None], emb.sin().to(q.dtype)[None, None]
    try:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
        res["rope_source"] = "transformers apply_rotary_pos_emb"
    except Exception:  # noqa: BLE001
        def rotate_half(t):
            a, b = t.chunk(2, -1)
            return torch.cat((-b, a), -1)

        def apply_rotary_pos_emb(q, k, cos, sin):
            return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        res["rope_source"] = "rotate_half written out (transformers not importable)"
    res["rope_f16_eager_us"] = median_us(lambda: apply_rotary_pos_emb(q, k, cos, sin))
    try:
        compiled = torch.compile(apply_rotary_pos_emb)
        res["rope_f16_compiled_us"] = median_us(lambda: compiled(q, k, cos, sin))
    except Exception as e:  # noqa: BLE001
        res["rope_f16_compiled_error"] = str(e).splitlines()[0]
    del q, k

    logits = torch.randn(8192, 50304, device=dev)
    target = torch.randint(0, 50304, (8192,), device=dev)
    res["cross_entropy_f32_us"] = median_us(lambda: F.cross_entropy(logits, target, reduction="none"))
    json.dump(res, open(out_path, "w"), indent=1)
    for k_, v in res.items():
        print(f"{k_:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
