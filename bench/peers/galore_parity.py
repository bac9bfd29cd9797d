#!/usr/bin/env python3
"""Model-level parity of Subspace's GaLore (or Fira) with galore-torch 1.0 (fira 1.0.2).

1. Writes a byte-level token file (`tokens.bin`, uint16 ids 0..255, the first bytes of a
   text corpus) and a small transformers `LlamaForCausalLM` (float32, random init, saved
   with `save_pretrained`), so both sides start from identical weights and data.
2. Runs `subspace train --init-from <that model> --data tokens.bin --shuffle false
   --optimizer galore ...` for `--steps` steps (constant lr, no clipping, no warmup) and reads
   the training loss of each step from its `metrics.jsonl`.
3. Trains the transformers model on the same batches in file order (Subspace's
   `SequenceBatches` without shuffling: the first 90% of the file is the training split,
   sequence k is tokens[k*T : k*T + T + 1], step s takes sequences s*B ..< s*B + B) with
   galore-torch's `GaLoreAdamW` on the attention and MLP matrices (`nn.Linear` modules whose
   name contains "attn" or "mlp") and `torch.optim.AdamW` (eps 1e-8, same lr and weight
   decay) on everything else, which is how Subspace's `galore` routes parameters.
4. Prints both loss curves and the largest relative difference; exits 1 above `--target`.

`torch.linalg.svd` is wrapped with Subspace's sign convention for singular vectors (column
i of U has its largest-magnitude entry positive, row i of Vh flipped with it); pass
`--torch-signs` to keep torch's own signs and see what the choice costs once the gap makes
the projector refresh during the run.

Usage:
  .venv/bin/python bench/peers/galore_parity.py [--subspace .build-galore/release/subspace]
      [--optimizer galore|fira] [--steps 50] [--rank 8] [--update-gap 10] ...
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)
ROOT = Path(__file__).resolve().parents[2]


def canonical_svd_wrapper(svd):
    import torch

    def wrapped(a, full_matrices=True, **kw):
        u, s, vh = svd(a, full_matrices=full_matrices, **kw)
        k = min(u.shape[1], vh.shape[0])
        idx = u[:, :k].abs().argmax(dim=0)
        signs = torch.sign(u[idx, torch.arange(k)])
        signs[signs == 0] = 1
        u = u.clone(); vh = vh.clone()
        u[:, :k] *= signs
        vh[:k, :] *= signs[:, None]
        return u, s, vh
    return wrapped


def corpus_bytes(n):
    for d in [ROOT / "data/shakespeare", ROOT.parent / "shared/data/shakespeare"]:
        if d.is_dir():
            out = b""
            for f in sorted(d.glob("*.txt")):
                out += f.read_bytes()
                if len(out) >= n:
                    return out[:n]
            return out
    raise SystemExit("no data/shakespeare corpus found")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subspace", default=str(ROOT / ".build-galore/release/subspace"))
    ap.add_argument("--work", default=str(ROOT / "runs/galore-parity"))
    ap.add_argument("--optimizer", default="galore", choices=["galore", "fira"])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=176)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--update-gap", type=int, default=10)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--torch-signs", action="store_true", help="do not normalize torch's SVD signs")
    ap.add_argument("--target", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    # Data: bytes as token ids, enough for the run plus a validation tail.
    need = args.steps * args.batch * args.seq + 1
    ids = list(corpus_bytes(int(need / 0.9) + 4096))
    torch.tensor(ids, dtype=torch.int16).numpy().astype("<u2").tofile(work / "tokens.bin")
    train = torch.tensor(ids[: len(ids) * 9 // 10], dtype=torch.long)

    # Model.
    torch.manual_seed(args.seed)
    cfg = LlamaConfig(
        hidden_size=args.dim, intermediate_size=args.ffn, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=256,
        max_position_embeddings=max(args.seq, 64), rms_norm_eps=1e-5, tie_word_embeddings=False,
        attn_implementation="eager")
    model = LlamaForCausalLM(cfg).float()
    model.save_pretrained(work / "init", safe_serialization=True)

    # Subspace.
    run_dir = work / "subspace-run"
    cmd = [
        args.subspace, "train", "--init-from", str(work / "init"), "--data", str(work / "tokens.bin"),
        "--steps", str(args.steps), "--batch", str(args.batch), "--seq", str(args.seq),
        "--optimizer", args.optimizer, "--lr", str(args.lr), "--weight-decay", str(args.weight_decay),
        "--rank", str(args.rank), "--update-gap", str(args.update_gap), "--scale", str(args.scale),
        "--schedule", "constant", "--warmup", "0", "--clip", "0", "--shuffle", "false",
        "--eval-every", "0", "--eval-batches", "1", "--sample-tokens", "0", "--out", str(run_dir),
    ]
    if args.optimizer == "fira":
        cmd += ["--fira-residual", "reference"]
    env = dict(os.environ, SUBSPACE_THREADS=str(args.threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"subspace train failed ({r.returncode})")
    ours = [json.loads(l)["loss"] for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]

    # The reference.
    if not args.torch_signs:
        torch.linalg.svd = canonical_svd_wrapper(torch.linalg.svd)
    hidden = [m.weight for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and ("attn" in n or "mlp" in n)]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids]
    group = {"params": hidden, "rank": args.rank, "update_proj_gap": args.update_gap, "proj_type": "std"}
    if args.optimizer == "galore":
        from galore_torch import GaLoreAdamW
        group["scale"] = args.scale
        proj_opt = GaLoreAdamW([group], lr=args.lr, weight_decay=args.weight_decay, no_deprecation_warning=True)
    else:
        from fira import FiraAdamW
        group["alpha"] = args.scale
        proj_opt = FiraAdamW([group], lr=args.lr, weight_decay=args.weight_decay, no_deprecation_warning=True)
    adam = torch.optim.AdamW(rest, lr=args.lr, eps=1e-8, weight_decay=args.weight_decay)
    m = (len(train) - 1) // args.seq
    theirs = []
    for step in range(args.steps):
        rows = [((step * args.batch + b) % m) * args.seq for b in range(args.batch)]
        x = torch.stack([train[s: s + args.seq] for s in rows])
        y = torch.stack([train[s + 1: s + args.seq + 1] for s in rows])
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        proj_opt.zero_grad(set_to_none=True); adam.zero_grad(set_to_none=True)
        loss.backward()
        proj_opt.step(); adam.step()
        theirs.append(loss.item())

    assert len(ours) == len(theirs), f"subspace logged {len(ours)} steps, expected {len(theirs)}"
    rel = [abs(a - b) / abs(b) for a, b in zip(ours, theirs)]
    print(f"{'step':>4} {'subspace':>10} {'reference':>10} {'rel diff':>9}")
    for i, (a, b, d) in enumerate(zip(ours, theirs, rel)):
        if i % 5 == 0 or i == len(rel) - 1:
            print(f"{i + 1:>4} {a:>10.5f} {b:>10.5f} {d:>9.2e}")
    worst = max(rel)
    ref = "fira 1.0.2 FiraAdamW (reference residual)" if args.optimizer == "fira" else "galore-torch 1.0 GaLoreAdamW"
    print(f"{args.optimizer} vs {ref}: {args.steps} steps, rank {args.rank}, gap {args.update_gap}, "
          f"{'torch' if args.torch_signs else 'normalized'} SVD signs: max relative loss difference {worst:.2e} "
          f"(target {args.target:.0e}); loss {theirs[0]:.4f} -> {theirs[-1]:.4f}")
    return 0 if worst <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
