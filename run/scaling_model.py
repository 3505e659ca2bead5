#!/usr/bin/env python3
"""scaling_model.py — predicted data-parallel step time and scaling efficiency.

From a one-GPU step time (measured with run/bench_train.sh, or predicted from
an MFU) and the bytes each ZeRO stage moves per step, predicts the step time of
the same per-GPU batch on 8 GPUs over NVLink and on 2-32 nodes of 8 GPUs over
InfiniBand, and where stage 2's overlap stops hiding its communication.

Model (per optimizer step, per GPU, P parameters, ring collectives):
  stage 0: all-reduce of the fp32 gradient           2 (n-1)/n * 4P bytes
  stage 1: reduce of each fp32 gradient shard to its owner, then each owner
           broadcasts the bf16 weights of its shard   (n-1)/n * (4P + 2P)
           (src/train/trainer.cpp: the owner holds the fp32 master of its
           shard only, and AdamW writes the shard's bf16 weights)
  stage 2: the same bytes as stage 1, but the reductions run bucket by bucket
           during the backward (optim/sharded_gradients.h; about 2/3 of the
           step's compute) on NCCL's stream, and only what exceeds the
           backward is exposed; the broadcast is not overlapped.
Across nodes the collectives are hierarchical: the intra-node part moves at
NVLink speed, the inter-node part of each GPU's 1/8 share at its NIC's speed.
Bandwidths are bus bandwidths per GPU (what NCCL's busbw reports), not link
peaks: defaults 360 GB/s NVLink (H100 SXM measured all-reduce busbw is
~360-380 of 450 GB/s per direction) and 45 GB/s per 400 Gb/s NIC, one NIC
per GPU. Everything here is a model: measure before trusting it.
"""
import argparse
import math
import sys


def qwen3_4b_params() -> int:
    return 4_022_468_096


def comm_seconds(P: int, stage: int, gpus: int, nvlink: float, nic: float) -> tuple:
    """(reduce part, gather part) seconds for one step on `gpus` GPUs (8 per node)."""
    per_node = min(gpus, 8)
    nodes = max(1, gpus // 8)
    grad_bytes = 4.0 * P
    weight_bytes = 2.0 * P  # the bf16 weights of every shard (what all_gather moves)

    def collective(bytes_total: float, factor: float) -> float:
        # intra-node ring over per_node GPUs, then inter-node ring of each GPU's share
        intra = factor * (per_node - 1) / per_node * bytes_total / nvlink if per_node > 1 else 0.0
        inter = factor * (nodes - 1) / nodes * (bytes_total / per_node) / nic if nodes > 1 else 0.0
        return intra + inter

    if stage == 0:
        return collective(grad_bytes, 2.0), 0.0
    return collective(grad_bytes, 1.0), collective(weight_bytes, 1.0)


def step_seconds(t1: float, P: int, stage: int, gpus: int, nvlink: float, nic: float) -> float:
    reduce_s, gather_s = comm_seconds(P, stage, gpus, nvlink, nic)
    if stage == 2:
        backward = 2.0 / 3.0 * t1
        return t1 + max(0.0, reduce_s - backward) + gather_s
    return t1 + reduce_s + gather_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=qwen3_4b_params(), help="parameter count")
    ap.add_argument("--step-time", type=float, default=0.0,
                    help="measured one-GPU step time in seconds (default: from --mfu)")
    ap.add_argument("--tokens", type=int, default=2 * 2048, help="tokens per GPU per step")
    ap.add_argument("--flops-per-token", type=float, default=27.76e9,
                    help="model flops per token (Qwen3-4B at T=2048: 27.76e9)")
    ap.add_argument("--mfu", type=float, default=0.5, help="one-GPU MFU when --step-time is not given")
    ap.add_argument("--nvlink-gbs", type=float, default=360.0)
    ap.add_argument("--nic-gbs", type=float, default=45.0)
    args = ap.parse_args()
    if args.params <= 0 or args.tokens <= 0 or not (0 < args.mfu <= 1):
        print("scaling_model.py: --params, --tokens must be positive and --mfu in (0, 1]",
              file=sys.stderr)
        return 2
    t1 = args.step_time or args.tokens * args.flops_per_token / (args.mfu * 989e12)
    nvlink, nic = args.nvlink_gbs * 1e9, args.nic_gbs * 1e9
    source = "measured" if args.step_time else f"predicted at {args.mfu:.0%} MFU"
    print(f"P = {args.params / 1e9:.2f}B parameters, one-GPU step {t1 * 1e3:.0f} ms ({source}), "
          f"{args.tokens} tokens per GPU per step")
    print(f"{'GPUs':>6} {'links':>14} | " + " | ".join(f"ZeRO-{s} ms  eff" for s in range(3)))
    for gpus in [8, 16, 32, 64, 128, 256]:
        links = "NVLink" if gpus == 8 else f"{gpus // 8} nodes, IB"
        cells = []
        for stage in range(3):
            t = step_seconds(t1, args.params, stage, gpus, nvlink, nic)
            cells.append(f"{t * 1e3:8.0f} {t1 / t:4.0%}")
        print(f"{gpus:>6} {links:>14} | " + " | ".join(cells))
    # Where stage 2's reduce-scatter no longer fits inside the backward.
    for nodes in range(2, 4097):
        reduce_s, _ = comm_seconds(args.params, 2, nodes * 8, nvlink, nic)
        if reduce_s > 2.0 / 3.0 * t1:
            print(f"stage 2 stops hiding its reduce-scatter at {nodes} nodes "
                  f"({reduce_s * 1e3:.0f} ms of communication against {2 / 3 * t1 * 1e3:.0f} ms of backward)")
            break
    else:
        print("stage 2 hides its reduce-scatter at every node count up to 4096")
    return 0


if __name__ == "__main__":
    sys.exit(main())
