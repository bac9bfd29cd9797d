#!/usr/bin/env python3
"""Builds the reference fixture for `GaLoreAdafactorTests`.

Runs galore-torch 1.0's `GaLoreAdafactor` (float32, CPU) on the gradient sequences stored
in `Tests/SubspaceTests/Fixtures/galore_steps.safetensors` (written by
`make_galore_fixtures.py`: a tall 48x20, a wide 20x48 and a square 32x32 matrix, 8 steps)
with rank 8, update_proj_gap 3 (SVDs at steps 0, 3, 6), scale 0.25, lr 0.01, weight decay
0.1 and GaLore's script settings (relative_step False, scale_parameter False,
warmup_init False, decay_rate -0.8, clip_threshold 1.0, eps (1e-30, 1e-3)), and writes
`Tests/SubspaceTests/Fixtures/galore_adafactor_steps.safetensors` with, for each run
`<run>` and shape `<s>`: `<run>.<s>.w.<t>` (weights after step t) and the final state
`<run>.<s>.exp_avg_sq_row`, `.exp_avg_sq_col`, `.ortho_matrix`, `.step` (and `.exp_avg`
with beta1). Runs:

- `gaf`: beta1 None, on tall, wide and square;
- `gaf_beta1`: beta1 0.9, on tall and wide;
- `gaf_scaled`: beta1 None with scale_parameter True (step scaled by max(1e-3, RMS(W))),
  on wide.

Torch's SVD is wrapped with the sign convention of Subspace's `Projector` (see
`make_galore_fixtures.py`). Metadata `config` holds the hyperparameters as JSON.

Usage: `.venv/bin/python scripts/make_galore_adafactor_fixtures.py` (needs
`pip install galore-torch==1.0`).
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_galore_fixtures as base  # noqa: E402  (canonical_svd, shapes, constants)

RANK, GAP, SCALE, LR, WD, STEPS = base.RANK, base.GAP, base.SCALE, base.LR, base.WD, base.STEPS
RUNS = {
    "gaf": (["tall", "wide", "square"], {"beta1": None, "scale_parameter": False}),
    "gaf_beta1": (["tall", "wide"], {"beta1": 0.9, "scale_parameter": False}),
    "gaf_scaled": (["wide"], {"beta1": None, "scale_parameter": True}),
}


def main():
    root = Path(__file__).resolve().parent.parent / "Tests/SubspaceTests/Fixtures"
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(root))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.linalg.svd = base.canonical_svd
    from galore_torch import GaLoreAdafactor

    source = load_file(str(root / "galore_steps.safetensors"))
    out = {}
    for run, (shapes, extra) in RUNS.items():
        for s in shapes:
            w = torch.nn.Parameter(source[f"{s}.w0"].clone())
            opt = GaLoreAdafactor(
                [{"params": [w], "rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "proj_type": "std"}],
                lr=LR, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, weight_decay=WD,
                relative_step=False, warmup_init=False, **extra)
            for t in range(STEPS):
                w.grad = source[f"{s}.grad.{t}"].clone()
                opt.step()
                out[f"{run}.{s}.w.{t}"] = w.detach().clone()
            st = opt.state[w]
            out[f"{run}.{s}.step"] = torch.tensor([float(st["step"])])
            out[f"{run}.{s}.ortho_matrix"] = st["projector"].ortho_matrix.detach().clone()
            for k in ["exp_avg_sq_row", "exp_avg_sq_col", "exp_avg"]:
                if k in st:
                    out[f"{run}.{s}.{k}"] = st[k].detach().clone()

    config = {
        "rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "lr": LR, "weight_decay": WD, "steps": STEPS,
        "relative_step": False, "warmup_init": False, "decay_rate": -0.8, "clip_threshold": 1.0,
        "eps": [1e-30, 1e-3], "runs": {k: {"shapes": v[0], **v[1]} for k, v in RUNS.items()},
        "gradients": "galore_steps.safetensors",
        "sign_convention": "column i of U has its largest-magnitude entry positive",
    }
    meta = {"config": json.dumps(config), "torch": torch.__version__, "galore_torch": "1.0"}
    path = Path(args.out) / "galore_adafactor_steps.safetensors"
    save_file({k: v.contiguous().float() for k, v in out.items()}, str(path), metadata=meta)
    print(f"wrote {path} ({len(out)} tensors)")


if __name__ == "__main__":
    main()
