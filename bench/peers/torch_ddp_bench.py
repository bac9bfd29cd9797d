#!/usr/bin/env python3
"""torch DDP (gloo) peer of `mpirun -np N subspace train`: the same LLaMA preset as
torch_bench.py, each rank a share of every global batch of random tokens, gradients averaged by
DistributedDataParallel (bucketed all-reduce overlapped with backward), torch.optim.AdamW or
galore-torch's GaLoreAdamW. Rank 0 prints one JSON line; tokens_per_s counts the global batch.

Usage: torchrun --nproc_per_node 2 bench/peers/torch_ddp_bench.py --preset tiny --batch 4 --steps 20 --threads 1
"""
import argparse, json, os, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import build_model, make_optimizer, peak_rss_bytes  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=4, help="sequences per rank")
    ap.add_argument("--seq", type=int)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "galore"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--update-gap", type=int, default=200)
    ap.add_argument("--scale", type=float, default=0.25)
    args = ap.parse_args()

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(args.threads)
    model, vocab, seq = build_model(args)
    ddp = DistributedDataParallel(model)
    opt = make_optimizer(model, args)
    gen = torch.Generator().manual_seed(0)
    times, loss_val = [], 0.0
    for s in range(args.warmup + args.steps):
        data = torch.randint(0, vocab, (args.batch * world, seq + 1), generator=gen)[rank * args.batch:(rank + 1) * args.batch]
        x, y = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        logits = ddp(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_val = loss.item()
        if s >= args.warmup:
            times.append(time.perf_counter() - t0)
    mean = statistics.mean(times)
    if rank == 0:
        print(json.dumps({
            "impl": "pytorch-ddp-gloo", "torch": torch.__version__, "preset": args.preset, "optimizer": args.optimizer,
            "ranks": world, "batch_per_rank": args.batch, "seq": seq, "steps": args.steps, "threads": args.threads,
            "tokens_per_s": args.batch * world * seq / mean, "step_ms_mean": mean * 1000,
            "peak_rss_bytes": peak_rss_bytes(), "loss": loss_val}, sort_keys=True))
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
