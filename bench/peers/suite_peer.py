#!/usr/bin/env python3
"""PyTorch peer of one `subspace bench --suite` training cell (pretrain or finetune).

The suite runner (`subspace bench --suite pretrain --peers`, or bench/peer_suite.sh) runs each
Subspace cell and then this script with:

  suite_peer.py --init DIR --train-tokens train.bin --val-tokens validation.bin --out CELL_DIR
                --cell NAME --suite pretrain --preset tiny --threads 2 -- <the cell's `train` arguments>

- Weights: `transformers.LlamaForCausalLM.from_pretrained(DIR)`, DIR being the safetensors
  checkpoint Subspace starts from (pretrain: the seed-0 initialisation it saved; finetune: the
  base cell's checkpoint), float32, SDPA attention.
- Data: the very token streams Subspace trains and evaluates on (uint16 files the runner
  writes from the same prepared data). Batches in file order, as Subspace's `SequenceBatches`
  with `--shuffle false`: sequence k is tokens[k*T : k*T + T + 1], step s takes sequences
  s*B ..< s*B + B modulo M = (n - 1) // T. Evaluation as `TrainingRun`: whole sequences in
  order in batches of B (a last partial batch dropped unless it is the only one), the first
  `--eval-batches` batches every `--eval-every` steps and the whole split after the last step;
  the loss is the token-weighted mean.
- Schedule and clipping as Subspace: GaLore's warmup + cosine to `--min-lr-ratio` (or constant
  after warmup) through `LambdaLR` on every optimizer, global-norm clipping at `--clip`.
- Optimizers, routed as Subspace routes them (the attention and MLP matrices to the method,
  the rest to AdamW unless said otherwise), with Subspace's defaults where the cell gives none:
    adamw             torch.optim.AdamW (lr 3e-3 when no --lr, `subspace train`'s default)
    galore            galore_torch.GaLoreAdamW on the matrices (eps 1e-6) + torch AdamW (eps 1e-8)
    galore-adafactor  galore_torch.GaLoreAdafactor on everything (projected on the matrices)
    galore8bit        galore_torch.GaLoreAdamW8bit + torch AdamW
    fira              fira.FiraAdamW + torch AdamW (fira's residual is the reference form; pass
                      --fira-residual reference to the Subspace cell for like with like)
    adafactor         transformers.optimization.Adafactor on everything
    muon              torch.optim.Muon on the matrices + torch AdamW (MuonWithAuxAdam's: lr 3e-4,
                      betas 0.9/0.95, eps 1e-10)
    adamw8bit         bitsandbytes.optim.AdamW8bit (if it runs on this machine's CPU)
  Any other method writes `pytorch.none` with the reason and exits 3.

Writes CELL_DIR/pytorch.json (one line with the keys of `Suite.Result`, impl "pytorch") and
CELL_DIR/pytorch-metrics.jsonl (the keys of Subspace's metrics.jsonl).
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")
NO_REFERENCE = 3


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def bool_arg(s):
    if s.lower() in ("true", "1", "yes"):
        return True
    if s.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def train_parser():
    """The `subspace train` flags the peer reads; everything else is ignored (and listed)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shuffle", type=bool_arg, default=True)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--lr", type=float)
    p.add_argument("--betas")
    p.add_argument("--eps", type=float)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--no-nesterov", action="store_true")
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--update-gap", type=int, default=200)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--proj-type", default="std")
    p.add_argument("--fira-residual", default="paper")
    p.add_argument("--adam-lr", type=float, default=3e-4)
    p.add_argument("--muon-adjust-lr", default="original")
    p.add_argument("--relative-step", type=bool_arg)
    p.add_argument("--scale-parameter", type=bool_arg)
    p.add_argument("--warmup-init", action="store_true")
    p.add_argument("--decay-rate", type=float, default=-0.8)
    p.add_argument("--clip-threshold", type=float, default=1.0)
    # Flags the peer takes from its own arguments instead (paths) or that do not apply.
    for ignored in ["--preset", "--out", "--data", "--init-from", "--tokenizer", "--sample-tokens",
                    "--checkpoint-every", "--config", "--resume", "--stop-after"]:
        p.add_argument(ignored)
    return p


def multiplier(a, step):
    """Subspace's LearningRateSchedule.multiplier (step 0 is the first update), with the
    warm-up fitted to the run as `train` fits it (at most steps - 1)."""
    warmup = max(0, min(a.warmup, a.steps - 1))
    if step < warmup:
        return step / max(1, warmup)
    if a.schedule != "cosine":
        return 1.0
    progress = (step - warmup) / max(1, a.steps - warmup)
    return a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def betas(a, default):
    if not a.betas:
        return default
    parts = [float(x) for x in a.betas.split(",")]
    return (parts[0], parts[1] if len(parts) > 1 else default[1])


def make_optimizers(a, model):
    """Returns (optimizers, reference name) or raises LookupError when there is no reference."""
    import torch

    hidden = [m.weight for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and ("attn" in n or "mlp" in n)]
    ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in ids]
    wd = a.weight_decay
    method = a.optimizer

    def aux_adamw(lr=None):
        return torch.optim.AdamW(rest, lr=lr if lr is not None else (a.lr or 1e-3), betas=betas(a, (0.9, 0.999)),
                                 eps=1e-8 if a.eps is None else a.eps, weight_decay=wd)

    if method == "adamw":
        lr = a.lr if a.lr is not None else 3e-3
        return [torch.optim.AdamW(model.parameters(), lr=lr, betas=betas(a, (0.9, 0.999)),
                                  eps=1e-8 if a.eps is None else a.eps, weight_decay=wd)], "torch.optim.AdamW"
    if method in ("galore", "galore8bit"):
        import galore_torch
        group = {"params": hidden, "rank": a.rank, "update_proj_gap": a.update_gap, "scale": a.scale, "proj_type": a.proj_type}
        cls = galore_torch.GaLoreAdamW if method == "galore" else galore_torch.GaLoreAdamW8bit
        kw = dict(lr=a.lr or 1e-3, betas=betas(a, (0.9, 0.999)), eps=1e-6 if a.eps is None else a.eps, weight_decay=wd)
        if method == "galore":
            kw["no_deprecation_warning"] = True
        name = "GaLoreAdamW" if method == "galore" else "GaLoreAdamW8bit"
        return [cls([group], **kw), aux_adamw()], f"galore_torch.{name}"
    if method == "galore-adafactor":
        from galore_torch import GaLoreAdafactor
        group = {"params": hidden, "rank": a.rank, "update_proj_gap": a.update_gap, "scale": a.scale, "proj_type": a.proj_type}
        relative = a.relative_step if a.relative_step is not None else False
        b1 = float(a.betas.split(",")[0]) if a.betas else None
        return [GaLoreAdafactor([{"params": rest}, group], lr=a.lr or 1e-3, relative_step=relative,
                                scale_parameter=a.scale_parameter if a.scale_parameter is not None else False,
                                warmup_init=a.warmup_init, beta1=b1, decay_rate=a.decay_rate,
                                clip_threshold=a.clip_threshold, weight_decay=wd)], "galore_torch.GaLoreAdafactor"
    if method == "fira":
        from fira import FiraAdamW
        group = {"params": hidden, "rank": a.rank, "update_proj_gap": a.update_gap, "alpha": a.scale, "proj_type": a.proj_type}
        return [FiraAdamW([group], lr=a.lr or 1e-3, betas=betas(a, (0.9, 0.999)), eps=1e-6 if a.eps is None else a.eps,
                          weight_decay=wd, no_deprecation_warning=True), aux_adamw()], "fira.FiraAdamW (reference residual)"
    if method == "adafactor":
        from transformers.optimization import Adafactor
        relative = a.relative_step if a.relative_step is not None else (a.lr is None)
        b1 = float(a.betas.split(",")[0]) if a.betas else None
        return [Adafactor(model.parameters(), lr=a.lr, relative_step=relative,
                          scale_parameter=a.scale_parameter if a.scale_parameter is not None else relative,
                          warmup_init=a.warmup_init, beta1=b1, decay_rate=a.decay_rate, clip_threshold=a.clip_threshold,
                          weight_decay=wd)], "transformers.Adafactor"
    if method == "muon":
        if not hasattr(torch.optim, "Muon"):
            raise LookupError(f"torch {torch.__version__} has no torch.optim.Muon")
        adjust = {"original": "original", "match_rms_adamw": "match_rms_adamw"}.get(a.muon_adjust_lr)
        if adjust is None:
            raise LookupError(f"torch.optim.Muon has no lr adjustment '{a.muon_adjust_lr}'")
        muon = torch.optim.Muon(hidden, lr=a.lr or 0.02, weight_decay=wd, momentum=0.95 if a.momentum is None else a.momentum,
                                nesterov=not a.no_nesterov, adjust_lr_fn=adjust)
        aux = torch.optim.AdamW(rest, lr=a.adam_lr, betas=betas(a, (0.9, 0.95)), eps=1e-10 if a.eps is None else a.eps,
                                weight_decay=wd)
        return [muon, aux], "torch.optim.Muon + AdamW"
    if method == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except Exception as e:  # noqa: BLE001
            raise LookupError(f"bitsandbytes does not import: {e}")
        return [bnb.optim.AdamW8bit(model.parameters(), lr=a.lr or 1e-3, betas=betas(a, (0.9, 0.999)),
                                    eps=1e-8 if a.eps is None else a.eps, weight_decay=wd)], "bitsandbytes.optim.AdamW8bit"
    raise LookupError(f"no PyTorch reference for '{method}' in the peer")


def state_bytes(optimizers):
    import torch
    total = 0
    for opt in optimizers:
        for st in opt.state.values():
            for v in st.values():
                if torch.is_tensor(v):
                    total += v.numel() * v.element_size()
                elif hasattr(v, "ortho_matrix") and torch.is_tensor(getattr(v, "ortho_matrix")):
                    total += v.ortho_matrix.numel() * v.ortho_matrix.element_size()
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True)
    ap.add_argument("--train-tokens", required=True)
    ap.add_argument("--val-tokens", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cell", required=True)
    ap.add_argument("--suite", default="pretrain")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("train_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    targs = [x for x in args.train_args if x != "--"] if args.train_args[:1] == ["--"] else args.train_args
    a, unknown = train_parser().parse_known_args(targs)
    out_json = os.path.join(args.out, "pytorch.json")
    metrics_path = os.path.join(args.out, "pytorch-metrics.jsonl")
    none_path = os.path.join(args.out, "pytorch.none")
    os.makedirs(args.out, exist_ok=True)
    if a.shuffle:
        sys.exit("suite_peer: the Subspace cell must read batches in file order (--shuffle false)")
    if a.grad_accum != 1:
        sys.exit("suite_peer: --grad-accum is not supported")

    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(a.seed)
    model = LlamaForCausalLM.from_pretrained(args.init, torch_dtype=torch.float32, attn_implementation="sdpa").train()
    try:
        optimizers, reference = make_optimizers(a, model)
    except LookupError as e:
        write_atomic(none_path, f"{e}\n")
        return NO_REFERENCE
    lambda_fn = lambda s: multiplier(a, s)  # noqa: E731
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda_fn) for o in optimizers]

    train = torch.from_numpy(np.fromfile(args.train_tokens, dtype="<u2").astype(np.int64))
    val = torch.from_numpy(np.fromfile(args.val_tokens, dtype="<u2").astype(np.int64))
    T = a.seq or min(256, model.config.max_position_embeddings)
    B = a.batch
    M = (len(train) - 1) // T
    if M < 1:
        sys.exit("suite_peer: the training tokens are shorter than one sequence")

    def batch_at(step):
        starts = [((step * B + b) % M) * T for b in range(B)]
        x = torch.stack([train[s: s + T] for s in starts])
        y = torch.stack([train[s + 1: s + T + 1] for s in starts])
        return x, y

    def eval_batches(limit=None):
        m = (len(val) - 1) // T
        out, k = [], 0
        while k < m and (limit is None or len(out) < limit):
            b = min(B, m - k)
            if b < B and out:
                break
            starts = [(k + i) * T for i in range(b)]
            out.append((torch.stack([val[s: s + T] for s in starts]), torch.stack([val[s + 1: s + T + 1] for s in starts])))
            k += b
        return out

    all_eval = eval_batches() if len(val) > T else []
    periodic = all_eval[: a.eval_batches] if a.eval_batches > 0 else all_eval

    @torch.no_grad()
    def evaluate(batches):
        total, n = 0.0, 0
        for x, y in batches:
            logits = model(input_ids=x).logits
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            n += y.numel()
        return total / n if n else float("nan")

    metrics = open(metrics_path, "w")
    train_seconds, tokens, best, last_val, step_times = 0.0, 0, None, None, []
    step_tokens = B * T
    for step in range(a.steps):
        x, y = batch_at(step)
        t0 = time.perf_counter()
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        lr = optimizers[0].param_groups[0]["lr"]
        for o in optimizers:
            o.step()
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        for s in schedulers:
            s.step()
        dt = time.perf_counter() - t0
        step_times.append(dt)
        train_seconds += dt
        tokens += step_tokens
        m = {"step": step + 1, "tokens": tokens, "loss": loss.item(), "lr": lr, "tokens_per_s": step_tokens / dt,
             "rss_bytes": current_rss_bytes(), "step_ms": dt * 1000}
        last = step + 1 == a.steps
        if all_eval and (last or (a.eval_every > 0 and (step + 1) % a.eval_every == 0)):
            v = evaluate(all_eval if last else periodic)
            m["val_loss"], m["val_ppl"] = v, math.exp(v)
            last_val = v
            best = v if best is None else min(best, v)
        metrics.write(json.dumps(m, sort_keys=True) + "\n")
        metrics.flush()
    metrics.close()

    cell_flags = []
    skip = {"--steps", "--eval-every", "--out", "--sample-tokens", "--data", "--init-from", "--tokenizer", "--shuffle",
            "--warmup", "--preset"}
    i = 0
    while i < len(targs):
        if targs[i] in skip:
            i += 2
            continue
        cell_flags.append(targs[i])
        i += 1
    settings, j = {}, 0
    while j < len(cell_flags):
        if cell_flags[j].startswith("--"):
            if j + 1 < len(cell_flags) and not cell_flags[j + 1].startswith("--"):
                settings[cell_flags[j][2:]] = cell_flags[j + 1]
                j += 2
                continue
            settings[cell_flags[j][2:]] = "true"
        j += 1
    result = {
        "cell": args.cell, "preset": args.preset, "suite": args.suite, "impl": "pytorch", "method": a.optimizer,
        "settings": settings, "flags": cell_flags, "reference": reference, "steps": a.steps, "tokens": tokens,
        "final_val_loss": last_val, "best_val_loss": best, "val_ppl": math.exp(last_val) if last_val is not None else None,
        "tokens_per_s": tokens / train_seconds, "step_ms": train_seconds * 1000 / a.steps,
        "tokens_per_s_median": step_tokens / statistics.median(step_times),
        "optimizer_state_bytes": state_bytes(optimizers), "peak_rss_bytes": peak_rss_bytes(), "batch": B, "seq": T,
        "torch": torch.__version__, "threads": args.threads, "ignored_flags": unknown,
    }
    result = {k: v for k, v in result.items() if v is not None}
    write_atomic(out_json, json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
