#!/usr/bin/env python3
"""make_token_shard.py OUT --vocab V --tokens N [--seed S]

Writes a token shard (256 int32 header: magic 20240520, version 2 = uint32
tokens, token count; then the tokens) of a learnable synthetic stream for
benchmarks and GPU checks on machines with no dataset: runs of an arithmetic
progression mod V (random start and step per run), so the loss falls as a
model learns to continue them. Python standard library only.
"""
import argparse
import os
import random
import struct
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.vocab < 2 or args.tokens < 1:
        print("make_token_shard.py: --vocab must be >= 2 and --tokens >= 1", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    tokens = []
    while len(tokens) < args.tokens:
        start, step = rng.randrange(args.vocab), rng.randrange(1, min(args.vocab, 8))
        run = rng.randrange(16, 64)
        tokens.extend((start + i * step) % args.vocab for i in range(run))
    tokens = tokens[: args.tokens]
    header = [0] * 256
    header[0], header[1], header[2] = 20240520, 2, len(tokens)
    with open(args.out + ".tmp", "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(tokens)}I", *tokens))
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
