#!/usr/bin/env python3
"""PyTorch peer of `subspace bench`: the same LLaMA preset, batch and random tokens,
trained with torch.optim.AdamW (or galore-torch's GaLoreAdamW), printing the same JSON keys.

Usage: bench/peers/torch_bench.py --preset tiny --batch 8 --steps 20 [--seq 256] [--threads 2] [--precision bf16]

--precision bf16 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16) (fp32
master weights and optimizer; the backward follows autocast's casts), the peer of
`subspace bench --precision bf16`.
"""
import argparse, json, os, resource, statistics, sys, time

PRESETS = {  # dim, layers, heads, kv heads, ffn, vocab, max seq (Sources/SubspaceModels/Models/LlamaConfig.swift)
    "tiny": (256, 4, 4, 4, 688, 4096, 256),
    "llama9m": (128, 4, 4, 4, 352, 32000, 1024),
    "llama20m": (256, 4, 4, 4, 688, 32000, 1024),
    "llama35m": (384, 6, 8, 8, 1024, 32000, 1024),
    "llama60m": (512, 8, 8, 8, 1376, 32000, 1024),
    "llama130m": (768, 12, 12, 12, 2048, 32000, 1024),
}


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_model(args):
    """The preset's LlamaForCausalLM (float32, train mode, seed 0), its vocabulary and the
    sequence length (--seq or min(256, context)); `args.attn` picks the attention kernel."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    dim, layers, heads, kv, ffn, vocab, max_seq = PRESETS[args.preset]
    seq = args.seq or min(256, max_seq)
    cfg = LlamaConfig(hidden_size=dim, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=ffn, vocab_size=vocab,
                      max_position_embeddings=max_seq, rms_norm_eps=1e-6, rope_theta=10000.0,
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    cfg._attn_implementation = getattr(args, "attn", "sdpa")
    return LlamaForCausalLM(cfg).float().train(), vocab, seq


def make_optimizer(model, args):
    """torch.optim.AdamW, or galore-torch's GaLoreAdamW on the attention and MLP matrices
    (AdamW on the rest), at args.lr, no weight decay."""
    import torch

    if args.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    from galore_torch import GaLoreAdamW
    galore = [p for n, p in model.named_parameters() if p.dim() == 2 and ("attn" in n or "mlp" in n)]
    ids = {id(p) for p in galore}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return GaLoreAdamW([{"params": rest}, {"params": galore, "rank": args.rank, "update_proj_gap": args.update_gap,
                         "scale": args.scale, "proj_type": "std"}], lr=args.lr, weight_decay=0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "galore"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--update-gap", type=int, default=200)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--attn", default="sdpa", help="transformers attention implementation")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: torch.autocast on the CPU")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, vocab, seq = build_model(args)
    params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, args)
    gen = torch.Generator().manual_seed(0)
    times, fwd, bwd, optt = [], 0.0, 0.0, 0.0
    loss_val = 0.0
    for s in range(args.warmup + args.steps):
        data = torch.randint(0, vocab, (args.batch, seq + 1), generator=gen)
        x, y = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        loss_val = loss.item()
        if s >= args.warmup:
            times.append(t3 - t0); fwd += t1 - t0; bwd += t2 - t1; optt += t3 - t2
    state = 0
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                state += v.numel() * v.element_size()
    mean = statistics.mean(times)
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "preset": args.preset, "optimizer": args.optimizer,
        "precision": args.precision,
        "params": params, "batch": args.batch, "seq": seq, "steps": args.steps, "threads": args.threads,
        "tokens_per_s": args.batch * seq / mean, "step_ms_median": statistics.median(times) * 1000,
        "step_ms_mean": mean * 1000, "forward_ms": fwd / args.steps * 1000, "backward_ms": bwd / args.steps * 1000,
        "optimizer_ms": optt / args.steps * 1000, "peak_rss_bytes": peak_rss_bytes(),
        "optimizer_state_bytes": state, "loss": loss_val}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
