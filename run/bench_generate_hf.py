"""transformers `generate` on the shape build/bench_generate measures (the
reference column of run/bench_generate.sh).

  python3 run/bench_generate_hf.py [--prompts 64] [--group 1] [--prompt-len 256]
      [--new 512] [--layers 28 --hidden 1024 --heads 16 --kv-heads 8 --head-dim 128
       --mlp 3072 --vocab 151936]

A fresh random Qwen3 model of that shape (the defaults: Qwen3-0.6B) in bf16 on
the GPU, `prompts` random prompts each repeated `group` times (transformers
has no prefix sharing: every copy is its own row), sampled at temperature 1
with no cut and no stop token, exactly `new` tokens each. Prints one line:
tokens/s, seconds, and the share of the memory-bandwidth bound (weights read
once per decode step, every cached key and value once; --bandwidth GB/s,
3350 = an H100's HBM3). Without torch/transformers or a GPU it says so and
exits 0.
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--new", type=int, default=512)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--mlp", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--bandwidth", type=float, default=3350.0)
    a = ap.parse_args()
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"transformers: skipped ({e})")
        return 0
    if not torch.cuda.is_available():
        print("transformers: skipped (no GPU)")
        return 0
    config = transformers.Qwen3Config(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.mlp,
        num_hidden_layers=a.layers, num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        max_position_embeddings=max(40960, a.prompt_len + a.new),
        tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model = model.cuda().eval()
    prompts = torch.randint(0, a.vocab, (a.prompts, a.prompt_len), device="cuda")
    ids = prompts.repeat_interleave(a.group, dim=0)
    mask = torch.ones_like(ids)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                  min_new_tokens=a.new, max_new_tokens=a.new, pad_token_id=0,
                  eos_token_id=None)
    with torch.no_grad():
        model.generate(ids[:1, :16], attention_mask=mask[:1, :16], **{**kwargs,
                       "min_new_tokens": 4, "max_new_tokens": 4})  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, **kwargs)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    generated = (out.shape[1] - a.prompt_len) * out.shape[0]
    params = sum(p.numel() for p in model.parameters())
    rows = ids.shape[0]
    kv_row = 2 * a.layers * a.kv_heads * a.head_dim * 2  # bytes per cached token
    # decode steps new - 1 (the first token comes from the prefill); step i
    # attends to prompt_len + i + 1 keys per row.
    steps = a.new - 1
    keys = rows * sum(a.prompt_len + i + 1 for i in range(1, a.new))
    bound = (steps * params * 2 + keys * kv_row) / (a.bandwidth * 1e9)
    print(f"transformers {transformers.__version__} {generated / seconds:10.1f} tokens/s  "
          f"{seconds:8.3f} s  bandwidth bound {bound:.3f} s ({100 * bound / seconds:.1f}% of it "
          f"reached)  peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
