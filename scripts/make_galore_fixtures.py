#!/usr/bin/env python3
"""Builds the reference fixtures for `GaLoreTests` and `FiraTests`.

Runs galore-torch 1.0's `GaLoreAdamW` and fira 1.0.2's `FiraAdamW` (float32, CPU) on fixed
gradient sequences for a tall (48x20), a wide (20x48) and a square (32x32) matrix with
rank 8, update_proj_gap 3 (SVDs at steps 0, 3, 6), scale/alpha 0.25, lr 0.01, weight decay
0.1 and betas/eps at their defaults, for 8 steps, and writes:

- `Tests/SubspaceTests/Fixtures/galore_steps.safetensors`: for each shape `<s>` in
  {tall, wide, square}: `<s>.w0` (initial weights), `<s>.grad.<t>` (gradient of step t,
  t = 0..7), and for each run `<run>` in {galore_std, galore_reverse_std} (reverse_std on
  the tall matrix only): `<run>.<s>.w.<t>` (weights after step t) and the final state
  `<run>.<s>.exp_avg`, `.exp_avg_sq`, `.ortho_matrix`, `.step`;
- `Tests/SubspaceTests/Fixtures/fira_steps.safetensors`: `fira.<s>.w.<t>` and the final
  state (`exp_avg`, `exp_avg_sq`, `ortho_matrix`, `step`, `scaling_grad`) of FiraAdamW on
  the same gradients.

Metadata `config` holds the hyperparameters as JSON.

Gradients are G_t = A_t diag(s) Bᵀ + 0.005 N_t with B random orthonormal, A_t the
orthonormal factor of A + 0.1·t·X (a subspace that drifts from step to step, so each
refresh changes P), s_i = 2·0.8^i and N_t standard normal. The singular values kept by the
projector are well separated at every step (the script checks a relative gap of at least 3%
between consecutive values up to the cut), so the SVD basis is numerically stable between
LAPACK builds.

**Sign convention.** Singular vectors are defined up to sign, and LAPACK (Subspace) and
torch may pick different ones; since GaLore's moments live in the projected space and are
carried across refreshes, a different sign at a later refresh changes the trajectory. This
script therefore wraps `torch.linalg.svd` with the convention Subspace's `Projector` uses:
column i of U is flipped so that its largest-magnitude entry is positive, and row i of Vh
with it (still an exact SVD of the same matrix). It reports how many refreshes torch's own
choice already agreed with the convention.

Usage: `.venv/bin/python scripts/make_galore_fixtures.py [--out DIR]`
(needs `pip install galore-torch==1.0 fira==1.0.2`).
"""

import argparse
import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore", category=FutureWarning)

SHAPES = {"tall": (48, 20), "wide": (20, 48), "square": (32, 32)}
RANK, GAP, SCALE, LR, WD, STEPS = 8, 3, 0.25, 0.01, 0.1, 8

_torch_svd = torch.linalg.svd
sign_stats = {"refreshes": 0, "already_canonical_vectors": 0, "vectors": 0}


def canonical_svd(a, full_matrices=True, **kw):
    u, s, vh = _torch_svd(a, full_matrices=full_matrices, **kw)
    k = min(u.shape[1], vh.shape[0])
    idx = u[:, :k].abs().argmax(dim=0)
    signs = torch.sign(u[idx, torch.arange(k)])
    signs[signs == 0] = 1
    sign_stats["refreshes"] += 1
    sign_stats["vectors"] += min(k, RANK)
    sign_stats["already_canonical_vectors"] += int((signs[:RANK] > 0).sum())
    u = u.clone()
    vh = vh.clone()
    u[:, :k] *= signs
    vh[:k, :] *= signs[:, None]
    return u, s, vh


def gradients(shape, seed):
    m, n = shape
    g = torch.Generator().manual_seed(seed)
    a, _ = torch.linalg.qr(torch.randn(m, min(m, n), generator=g))
    b, _ = torch.linalg.qr(torch.randn(n, min(m, n), generator=g))
    x = torch.randn(m, min(m, n), generator=g)
    s = 2 * 0.8 ** torch.arange(min(m, n), dtype=torch.float32)
    grads = []
    for t in range(STEPS):
        at, _ = torch.linalg.qr(a + 0.1 * t * x)
        grads.append(at @ torch.diag(s) @ b.T + 0.005 * torch.randn(m, n, generator=g))
    for t in range(STEPS):
        sv = _torch_svd(grads[t], full_matrices=False)[1]
        gaps = [(sv[i] - sv[i + 1]) / sv[i] for i in range(RANK)]
        assert min(gaps) > 0.03, f"{shape} step {t}: singular values too close ({min(gaps):.3f})"
    return grads


def run(make_opt, w0, grads, state_keys):
    w = torch.nn.Parameter(w0.clone())
    opt = make_opt(w)
    out = {}
    for t, g in enumerate(grads):
        w.grad = g.clone()
        opt.step()
        out[f"w.{t}"] = w.detach().clone()
    st = opt.state[w]
    for k in state_keys:
        v = st[k]
        if k == "projector":
            out["ortho_matrix"] = v.ortho_matrix.detach().clone()
        elif torch.is_tensor(v):
            out[k] = v.detach().clone().reshape(-1) if v.dim() == 0 else v.detach().clone()
        else:
            out[k] = torch.tensor([float(v)])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests/SubspaceTests/Fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.linalg.svd = canonical_svd

    from galore_torch import GaLoreAdamW
    from fira import FiraAdamW
    import galore_torch, fira

    galore, fira_out = {}, {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        gen = torch.Generator().manual_seed(100 + i)
        w0 = 0.1 * torch.randn(*shape, generator=gen)
        grads = gradients(shape, 200 + i)
        galore[f"{name}.w0"] = w0
        for t, g in enumerate(grads):
            galore[f"{name}.grad.{t}"] = g
        types = ["std", "reverse_std"] if name == "tall" else ["std"]
        for pt in types:
            res = run(
                lambda w: GaLoreAdamW(
                    [{"params": [w], "rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "proj_type": pt}],
                    lr=LR, weight_decay=WD, no_deprecation_warning=True),
                w0, grads, ["exp_avg", "exp_avg_sq", "projector", "step"])
            for k, v in res.items():
                galore[f"galore_{pt}.{name}.{k}"] = v
        res = run(
            lambda w: FiraAdamW(
                [{"params": [w], "rank": RANK, "update_proj_gap": GAP, "alpha": SCALE, "proj_type": "std"}],
                lr=LR, weight_decay=WD, no_deprecation_warning=True),
            w0, grads, ["exp_avg", "exp_avg_sq", "projector", "step", "scaling_grad"])
        for k, v in res.items():
            fira_out[f"fira.{name}.{k}"] = v

    config = {
        "rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "lr": LR, "weight_decay": WD, "steps": STEPS,
        "betas": [0.9, 0.999], "eps": 1e-6, "shapes": {k: list(v) for k, v in SHAPES.items()},
        "sign_convention": "column i of U has its largest-magnitude entry positive",
    }
    meta = {
        "config": json.dumps(config), "torch": torch.__version__,
        "galore_torch": getattr(galore_torch, "__version__", "1.0"), "fira": "1.0.2",
    }
    out = Path(args.out)
    save_file({k: v.contiguous().float() for k, v in galore.items()}, str(out / "galore_steps.safetensors"), metadata=meta)
    save_file({k: v.contiguous().float() for k, v in fira_out.items()}, str(out / "fira_steps.safetensors"), metadata=meta)
    print(f"wrote {out}/galore_steps.safetensors ({len(galore)} tensors), fira_steps.safetensors ({len(fira_out)})")
    print(f"torch's own signs already matched the convention for {sign_stats['already_canonical_vectors']} "
          f"of {sign_stats['vectors']} kept singular vectors over {sign_stats['refreshes']} SVDs")


if __name__ == "__main__":
    main()
