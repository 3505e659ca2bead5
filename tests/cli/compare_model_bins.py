#!/usr/bin/env python3
"""Compares the fp32 parameters of two model.bin files tensor by tensor.

  compare_model_bins.py A.bin B.bin [TOL]

Reads the 1024-byte header (model/model_file.h), rebuilds the tensor layout of
model/params.cpp (GPT-2 or Qwen3) and checks, for every tensor,
  ||a - b|| <= TOL * max(||a||, 1e-30)        (TOL default 1e-5)
Prints the worst tensor; exit 0 when all pass, 1 otherwise. Python stdlib only.
"""
import math, struct, sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    h = struct.unpack_from("<256i", data, 0)
    assert h[0] == 20240601 and h[3] == 0, path + ": not an fp32 model.bin"
    count = h[15] | (h[16] << 32)
    params = struct.unpack_from("<%df" % count, data, 1024)
    return h, params


def layout(h):
    family, V, C, L, H, KV, D, F, P, tied = h[2], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12]
    gpt2 = family == 1
    Q, K = H * D, KV * D
    out = [("embed_tokens", V * C)]
    if gpt2: out.append(("embed_positions", P * C))
    for l in range(L):
        p = "layers.%d." % l
        out.append((p + "attn_norm.weight", C))
        if gpt2: out.append((p + "attn_norm.bias", C))
        out.append((p + "attn.q.weight", Q * C))
        if gpt2: out.append((p + "attn.q.bias", Q))
        out.append((p + "attn.k.weight", K * C))
        if gpt2: out.append((p + "attn.k.bias", K))
        out.append((p + "attn.v.weight", K * C))
        if gpt2: out.append((p + "attn.v.bias", K))
        if not gpt2:
            out.append((p + "attn.q_norm.weight", D))
            out.append((p + "attn.k_norm.weight", D))
        out.append((p + "attn.o.weight", C * Q))
        if gpt2: out.append((p + "attn.o.bias", C))
        out.append((p + "mlp_norm.weight", C))
        if gpt2: out.append((p + "mlp_norm.bias", C))
        if not gpt2: out.append((p + "mlp.gate.weight", F * C))
        out.append((p + "mlp.up.weight", F * C))
        if gpt2: out.append((p + "mlp.up.bias", F))
        out.append((p + "mlp.down.weight", C * F))
        if gpt2: out.append((p + "mlp.down.bias", C))
    out.append(("final_norm.weight", C))
    if gpt2: out.append(("final_norm.bias", C))
    if not tied: out.append(("lm_head", V * C))
    return out


def main():
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    ha, a = read(sys.argv[1])
    hb, b = read(sys.argv[2])
    if ha[:17] != hb[:17]:
        print("FAIL: the two files have different configs")
        return 1
    tensors = layout(ha)
    if sum(n for _, n in tensors) != len(a):
        print("FAIL: layout does not match the parameter count")
        return 1
    offset, worst, worst_name, bad = 0, 0.0, "", 0
    for name, n in tensors:
        xa, xb = a[offset:offset + n], b[offset:offset + n]
        offset += n
        diff = math.sqrt(sum((x - y) ** 2 for x, y in zip(xa, xb)))
        norm = math.sqrt(sum(x * x for x in xa))
        rel = diff / max(norm, 1e-30)
        if rel > worst:
            worst, worst_name = rel, name
        if rel > tol:
            bad += 1
    print("%d tensors, %d over %.1e; worst relative difference %.3e (%s)"
          % (len(tensors), bad, tol, worst, worst_name or "-"))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
