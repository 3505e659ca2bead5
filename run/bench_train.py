#!/usr/bin/env python3
"""PyTorch reference for the engine's training speed (run/bench_train.sh).

    python3 run/bench_train.py --model gpt2-124M --batch 32 --seq 1024 --steps 20 --warmup 5
    python3 run/bench_train.py --model qwen3-4B --batch 2 --seq 2048 --checkpointing

The same training step the engine runs, done the way a careful PyTorch user
would on one GPU:
  - GPT-2 (124M, 1.5B): a plain PyTorch GPT-2 written below (token + position
    embeddings, pre-LN blocks with one fused qkv Linear, causal
    F.scaled_dot_product_attention on the flash backend, GELU tanh, tied LM
    head), torch.compile'd.
  - Qwen3-4B: transformers' Qwen3ForCausalLM from a config equal to the
    engine's qwen3-4B preset (model/config.cpp), attention through SDPA,
    gradient checkpointing with --checkpointing (the engine's --recompute layer).
Both: fp32 master weights (the model is fp32), bf16 autocast, global-norm
gradient clipping at 1.0 (the engine's default --grad-clip), and
torch.optim.AdamW(fused=True). Random tokens, one fixed batch (no data
loading in the timed loop).

Prints ONE JSON line on stdout:
  {"impl": "pytorch", "model", "batch", "seq", "tokens_per_s", "ms_per_step",
   "mfu", "peak_mem_gib"}
peak_mem_gib is torch.cuda.max_memory_allocated (tensors; the caching
allocator reserves somewhat more).

MFU (model flops utilisation) = flops_per_token(model, T) * tokens_per_s / 989e12
(H100 SXM dense bf16), with
  flops_per_token = 6 * N_params + 12 * L * (H * D) * T
  - N_params counts every parameter EXCEPT the learned position embeddings
    (GPT-2's wpe: a lookup, no matmul); the tied token embedding is counted
    once, as the LM head matmul it also is.
  - The attention term is PaLM's 12 * L * d_attn * T with d_attn = heads *
    head_dim (= C for GPT-2; 4096 for Qwen3-4B, whose C is 2560): q k^T and
    p v over the FULL T x T score matrix (causal masking not discounted),
    forward + backward.
  - Recomputation (checkpointing) is not counted: it is model flops, not
    hardware flops.
run/bench_train.sh computes the engine's MFU with the function mfu() of this
file (`--print-flops-per-token` prints the number without importing torch),
so both columns use the same formula.
"""
import argparse
import json
import math
import sys
import time

H100_PEAK_FLOPS = 989e12  # dense bf16, H100 SXM

# The engine's presets (model/config.cpp).
MODELS = {
    "gpt2-124M": dict(family="gpt2", layers=12, hidden=768, heads=12, kv_heads=12, head_dim=64,
                      mlp=3072, vocab=50257, max_pos=1024),
    "gpt2-1.5B": dict(family="gpt2", layers=48, hidden=1600, heads=25, kv_heads=25, head_dim=64,
                      mlp=6400, vocab=50257, max_pos=1024),
    "qwen3-4B": dict(family="qwen3", layers=36, hidden=2560, heads=32, kv_heads=8, head_dim=128,
                     mlp=9728, vocab=151936, max_pos=40960, rope_theta=1e6, eps=1e-6),
}


def count_params(name):
    """Parameters of the preset, and how many of them are position embeddings."""
    m = MODELS[name]
    L, C, V, F = m["layers"], m["hidden"], m["vocab"], m["mlp"]
    Q, KV = m["heads"] * m["head_dim"], m["kv_heads"] * m["head_dim"]
    if m["family"] == "gpt2":
        per_layer = (2 * C                      # ln_1
                     + C * (Q + 2 * KV) + (Q + 2 * KV)  # fused qkv + bias
                     + Q * C + C                # attention output + bias
                     + 2 * C                    # ln_2
                     + C * F + F                # up + bias
                     + F * C + C)               # down + bias
        position = m["max_pos"] * C
        total = V * C + position + L * per_layer + 2 * C  # tied head; ln_f
        return total, position
    per_layer = (C                              # input_layernorm
                 + C * (Q + 2 * KV)             # q, k, v (no bias)
                 + Q * C                        # o
                 + 2 * m["head_dim"]            # q_norm, k_norm
                 + C                            # post_attention_layernorm
                 + 3 * C * F)                   # gate, up, down
    return V * C + L * per_layer + C, 0        # tied head; final norm


def flops_per_token(name, seq):
    m = MODELS[name]
    total, position = count_params(name)
    n = total - position
    return 6 * n + 12 * m["layers"] * m["heads"] * m["head_dim"] * seq


def mfu(name, seq, tokens_per_s):
    return flops_per_token(name, seq) * tokens_per_s / H100_PEAK_FLOPS


# ---------------------------------------------------------------------------
# Models (torch imported inside: this file parses and its formulas run without it)

def build_gpt2(cfg, torch):
    nn, F = torch.nn, torch.nn.functional
    C, H, L, V, T, FF = cfg["hidden"], cfg["heads"], cfg["layers"], cfg["vocab"], cfg["max_pos"], cfg["mlp"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=1e-5)
            self.qkv = nn.Linear(C, 3 * C)
            self.proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C, eps=1e-5)
            self.up = nn.Linear(C, FF)
            self.down = nn.Linear(FF, C)

        def forward(self, x):
            B, T_, _ = x.shape
            q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
            q = q.view(B, T_, H, C // H).transpose(1, 2)
            k = k.view(B, T_, H, C // H).transpose(1, 2)
            v = v.view(B, T_, H, C // H).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T_, C))
            return x + self.down(F.gelu(self.up(self.ln_2(x)), approximate="tanh"))

    class GPT2(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C, eps=1e-5)
            self.lm_head = nn.Linear(C, V, bias=False)
            self.lm_head.weight = self.wte.weight  # tied
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith(("proj.weight", "down.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            B, T_ = idx.shape
            pos = torch.arange(T_, device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.blocks:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, V).float(), targets.reshape(-1))

    return GPT2()


def build_qwen3(cfg, torch):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    common = dict(vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["mlp"],
                  num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                  num_key_value_heads=cfg["kv_heads"], head_dim=cfg["head_dim"],
                  max_position_embeddings=cfg["max_pos"], rms_norm_eps=cfg["eps"],
                  tie_word_embeddings=True, attention_bias=False, hidden_act="silu",
                  use_cache=False, use_sliding_window=False)
    try:  # transformers 5: the RoPE base lives in rope_parameters
        config = Qwen3Config(**common, rope_parameters={"rope_type": "default",
                                                        "rope_theta": cfg["rope_theta"]})
    except TypeError:  # transformers 4
        config = Qwen3Config(**common, rope_theta=cfg["rope_theta"])
    model = Qwen3ForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32)

    class Wrapper(torch.nn.Module):  # same call signature as the GPT-2 above
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, idx, targets):
            logits = self.inner(input_ids=idx).logits
            return torch.nn.functional.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))

    return Wrapper(model), model


def run(args):
    try:
        import torch
    except ImportError as e:
        print(f"bench_train.py: PyTorch is not installed here ({e})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("bench_train.py: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    cfg = MODELS[args.model]
    if cfg["family"] == "gpt2" and args.seq > cfg["max_pos"]:
        raise SystemExit(f"--seq {args.seq} is beyond GPT-2's {cfg['max_pos']} positions")
    torch.manual_seed(1337)
    torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul left outside autocast
    device = torch.device("cuda")
    compile_model = args.compile if args.compile is not None else cfg["family"] == "gpt2"

    with torch.device(device):  # parameters made (and initialised) on the GPU
        if cfg["family"] == "gpt2":
            model = build_gpt2(cfg, torch)
            inner = model
            if args.checkpointing:
                print("bench_train.py: --checkpointing applies to qwen3 only; ignored", file=sys.stderr)
        else:
            model, inner = build_qwen3(cfg, torch)
            if args.checkpointing:
                inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)  # tied weights appear once
    total, position = count_params(args.model)
    if n_params != total:
        print(f"bench_train.py: warning: the model has {n_params} parameters, the formula counts "
              f"{total}", file=sys.stderr)
    assert all(p.dtype == torch.float32 for p in params), "master weights must be fp32"

    # Weight decay off for norms, biases and embeddings, like the engine.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n
             and "embed" not in n]
    decay_ids = {id(p) for p in decay}
    no_decay = [p for p in params if id(p) not in decay_ids]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_model = torch.compile(model) if compile_model else model

    data = torch.randint(0, cfg["vocab"], (args.batch, args.seq + 1), device=device)
    idx, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    # GPT-2 is pinned to the flash kernel (an error if it cannot run, rather
    # than a silent fallback); Qwen3 is left to SDPA's own choice, as
    # attn_implementation="sdpa" does in practice.
    import contextlib
    from torch.nn.attention import SDPBackend, sdpa_kernel
    attention = sdpa_kernel([SDPBackend.FLASH_ATTENTION]) if cfg["family"] == "gpt2" \
        else contextlib.nullcontext()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    with attention:
        t0 = time.perf_counter()
        for _ in range(args.warmup):  # includes torch.compile
            loss = step()
        torch.cuda.synchronize()
        warm_s = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    # the peak of steady-state steps: weights, AdamW moments, gradients and
    # activations (the warm-up's compile-time allocations excluded)
    peak = torch.cuda.max_memory_allocated() / 2**30
    tokens_per_s = args.batch * args.seq * args.steps / elapsed
    print(f"bench_train.py: {args.model} on {torch.cuda.get_device_name()}: {n_params} parameters, "
          f"compile={compile_model}, checkpointing={args.checkpointing}, warm-up {warm_s:.1f} s, "
          f"last loss {loss.item():.3f}", file=sys.stderr)
    print(json.dumps({
        "impl": "pytorch",
        "model": args.model,
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_s": round(tokens_per_s, 1),
        "ms_per_step": round(1000 * elapsed / args.steps, 2),
        "mfu": round(mfu(args.model, args.seq, tokens_per_s), 4),
        "peak_mem_gib": round(peak, 2),
    }), flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (torch.compile)")
    parser.add_argument("--checkpointing", action="store_true",
                        help="gradient checkpointing per layer (qwen3)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on for gpt2, off for qwen3)")
    parser.add_argument("--print-flops-per-token", action="store_true",
                        help="print the MFU formula's flops per token for --model/--seq and exit "
                             "(no torch needed)")
    args = parser.parse_args(argv)
    if args.print_flops_per_token:
        print(flops_per_token(args.model, args.seq))
        return 0
    if args.batch < 1 or args.seq < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch, --seq, --steps must be positive and --warmup >= 0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
