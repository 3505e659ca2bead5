#!/usr/bin/env python3
"""PyTorch SDPA reference for build/bench_attention (src/bench/bench_attention.cpp).

    python3 run/bench_attention.py

Causal F.scaled_dot_product_attention in bf16, forward and backward, on the
flash backend and on the cuDNN backend (torch.nn.attention.sdpa_kernel), at
the engine benchmark's shapes:
    Qwen3-4B  B=2 T=2048 H=32 KVH=8 D=128
    Qwen3-4B  B=2 T=8192 H=32 KVH=8 D=128
    GPT-2     B=8 T=1024 H=12 KVH=12 D=64
GQA (KVH < H) goes through enable_gqa=True (PyTorch >= 2.5); a backend that
refuses it is retried with k and v repeated to H heads (the repeat is outside
the timed region; its gradient reduction is not timed either), and the line
says so.

Flops as the engine counts them (causal half): forward 4*B*H*T^2*D/2,
backward 2.5x the forward; TFLOP/s and % of the H100 SXM's 989 TFLOP/s.
Timing: 3 warm-up calls, then CUDA events around N calls (10; 5 at T=8192).
"""
import sys

PEAK = 989e12
SHAPES = [
    ("qwen3-4B", 2, 2048, 32, 8, 128),
    ("qwen3-4B", 2, 8192, 32, 8, 128),
    ("gpt2-124M", 8, 1024, 12, 12, 64),
]


def main():
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f"bench_attention.py: skipped: PyTorch not available ({e})")
        return 0
    if not torch.cuda.is_available():
        print("bench_attention.py: skipped: no CUDA device")
        return 0
    dev = torch.device("cuda")
    print(f"bench_attention.py: torch {torch.__version__}, {torch.cuda.get_device_name(0)}; "
          f"causal flops (fwd 4*B*H*T^2*D/2, bwd 2.5x); % of {PEAK / 1e12:.0f} TFLOP/s")

    def timed(fn, calls):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / calls

    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
    for name, B, T, H, KVH, D in SHAPES:
        fwd_flops = 4.0 * B * H * T * T * D / 2
        bwd_flops = 2.5 * fwd_flops
        calls = 5 if T >= 8192 else 10
        g = torch.Generator(device=dev).manual_seed(0)
        q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        k = torch.randn(B, KVH, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        v = torch.randn(B, KVH, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        dout = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        for label, backend in backends:
            note = ""
            try:
                qq = q.detach().requires_grad_(True)
                kk = k.detach().requires_grad_(True)
                vv = v.detach().requires_grad_(True)
                gqa = KVH != H
                with sdpa_kernel(backend):
                    try:
                        out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True,
                                                             enable_gqa=gqa)
                        kin, vin = kk, vv
                    except RuntimeError:
                        if not gqa:
                            raise
                        # The backend refuses GQA: repeat k, v to H heads.
                        kin = kk.repeat_interleave(H // KVH, dim=1).detach().requires_grad_(True)
                        vin = vv.repeat_interleave(H // KVH, dim=1).detach().requires_grad_(True)
                        gqa = False
                        note = " (k, v repeated to H heads)"
                        out = F.scaled_dot_product_attention(qq, kin, vin, is_causal=True)

                    def fwd():
                        with torch.no_grad():
                            F.scaled_dot_product_attention(qq, kin, vin, is_causal=True,
                                                           enable_gqa=gqa)

                    def bwd():
                        torch.autograd.grad(out, (qq, kin, vin), dout, retain_graph=True)

                    f_ms = timed(fwd, calls)
                    b_ms = timed(bwd, calls)
                ft = fwd_flops / (f_ms * 1e-3) / 1e12
                bt = bwd_flops / (b_ms * 1e-3) / 1e12
                print(f"{name:<10} B={B} T={T:<5} H={H:<2} KVH={KVH:<2} D={D:<3} {label:<6}  "
                      f"fwd {f_ms:8.3f} ms {ft:7.1f} TFLOP/s ({100 * ft * 1e12 / PEAK:4.1f}%)  "
                      f"bwd {b_ms:8.3f} ms {bt:7.1f} TFLOP/s ({100 * bt * 1e12 / PEAK:4.1f}%)"
                      f"{note}")
            except RuntimeError as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                print(f"{name:<10} B={B} T={T:<5} H={H:<2} KVH={KVH:<2} D={D:<3} {label:<6}  "
                      f"unavailable: {msg}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
