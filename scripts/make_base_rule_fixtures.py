#!/usr/bin/env python3
"""Builds the reference fixtures for `AdafactorTests` and `MuonTests`.

Writes `Tests/SubspaceTests/Fixtures/base_rules.safetensors` (float32 throughout) holding,
for three parameters (`tall` [16, 6], `wide` [5, 14] and `vector` [9] for Adafactor; `tall`
[24, 10], `wide` [10, 24] and `square` [12, 12] for Muon):

- `<rule>.init.<param>`: the starting weights;
- `<rule>.grad.<param>.<t>` for t = 1..5: a fixed gradient sequence whose scale changes from
  step to step (x1, x3, x0.2, x1, x10), so that update clipping and the decaying second
  moment are exercised;
- `<case>.<param>.<t>`: the weights after step t, for every case listed in the `cases`
  metadata (JSON: name, rule and the reference's keyword arguments).

Adafactor cases run `transformers.optimization.Adafactor` as shipped (float32). Muon cases
run `torch.optim.Muon` twice: `<case>.<param>.<t>` with its Newton-Schulz iteration redirected
from bfloat16 to float32 (the function is torch's own; only the name `torch.bfloat16` that it
casts to is rebound to `torch.float32` inside `torch.optim._muon` while it runs), which is
what Subspace computes, and `<case>.bf16.<param>.<t>` stock, to measure how far the bfloat16
iteration the reference uses is from ours.

`ns.<shape>.input` / `ns.<shape>.f32` / `ns.<shape>.bf16` hold torch's
`_zeropower_via_newtonschulz` (5 steps, Jordan's coefficients) of fixed matrices, in float32
(redirected as above) and stock bfloat16.

Metadata also records the library versions.

Usage: `.venv/bin/python scripts/make_base_rule_fixtures.py [--out DIR]`
"""

import argparse
import contextlib
import json
import os
from pathlib import Path

import torch
import torch.optim._muon as torch_muon
import transformers
from safetensors.torch import save_file
from transformers.optimization import Adafactor

STEPS = 5
SCALES = [1.0, 3.0, 0.2, 1.0, 10.0]

ADAFACTOR_SHAPES = {"tall": [16, 6], "wide": [5, 14], "vector": [9]}
MUON_SHAPES = {"tall": [24, 10], "wide": [10, 24], "square": [12, 12]}

# Keyword arguments for transformers' Adafactor.
ADAFACTOR_CASES = {
    # transformers' defaults: relative step, parameter scaling, no momentum.
    "adafactor_default": {},
    # Relative step with warmup_init and momentum.
    "adafactor_warmup_beta1": {"warmup_init": True, "beta1": 0.9},
    # GaLore's script: external lr, no parameter scaling, decay_rate -0.8.
    "adafactor_galore": {"lr": 1e-2, "relative_step": False, "scale_parameter": False, "decay_rate": -0.8},
    # External lr with parameter scaling, momentum and weight decay.
    "adafactor_scaled_beta1_wd": {
        "lr": 5e-2, "relative_step": False, "scale_parameter": True, "beta1": 0.9, "weight_decay": 0.1,
    },
    # Tighter clipping, another decay rate, momentum and a small weight decay.
    "adafactor_clip_decay": {
        "lr": 5e-3, "relative_step": False, "scale_parameter": False, "clip_threshold": 0.5,
        "decay_rate": -0.5, "beta1": 0.5, "weight_decay": 0.01,
    },
}

# Keyword arguments for torch.optim.Muon (ns_coefficients stay Jordan's defaults).
MUON_CASES = {
    "muon_nesterov": {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True},
    "muon_plain_match_rms": {
        "lr": 0.01, "weight_decay": 0.01, "momentum": 0.9, "nesterov": False, "adjust_lr_fn": "match_rms_adamw",
    },
}


class _Float32Torch:
    """`torch`, except that `bfloat16` names `float32`."""

    bfloat16 = torch.float32

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def float32_newton_schulz():
    saved = torch_muon.torch
    torch_muon.torch = _Float32Torch()
    try:
        yield
    finally:
        torch_muon.torch = saved


def sequences(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    init = {k: torch.randn(s, generator=gen) * 0.5 for k, s in shapes.items()}
    grads = {
        k: [torch.randn(s, generator=gen) * SCALES[t] for t in range(STEPS)] for k, s in shapes.items()
    }
    return init, grads


def run(make_optimizer, init, grads):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = make_optimizer(list(params.values()))
    out = {}
    for t in range(STEPS):
        for k, p in params.items():
            p.grad = grads[k][t].clone()
        opt.step()
        for k, p in params.items():
            out[(k, t + 1)] = p.detach().clone()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests/SubspaceTests/Fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    tensors = {}
    cases = []

    a_init, a_grads = sequences(ADAFACTOR_SHAPES, 1234)
    for k in ADAFACTOR_SHAPES:
        tensors[f"adafactor.init.{k}"] = a_init[k]
        for t in range(STEPS):
            tensors[f"adafactor.grad.{k}.{t + 1}"] = a_grads[k][t]
    for name, kw in ADAFACTOR_CASES.items():
        out = run(lambda ps: Adafactor(ps, **kw), a_init, a_grads)
        for (k, t), w in out.items():
            tensors[f"{name}.{k}.{t}"] = w
        cases.append({"name": name, "rule": "adafactor", "kwargs": kw})

    m_init, m_grads = sequences(MUON_SHAPES, 4321)
    for k in MUON_SHAPES:
        tensors[f"muon.init.{k}"] = m_init[k]
        for t in range(STEPS):
            tensors[f"muon.grad.{k}.{t + 1}"] = m_grads[k][t]
    for name, kw in MUON_CASES.items():
        with float32_newton_schulz():
            out = run(lambda ps: torch.optim.Muon(ps, **kw), m_init, m_grads)
        stock = run(lambda ps: torch.optim.Muon(ps, **kw), m_init, m_grads)
        for (k, t), w in out.items():
            tensors[f"{name}.{k}.{t}"] = w
            tensors[f"{name}.bf16.{k}.{t}"] = stock[(k, t)]
        cases.append({"name": name, "rule": "muon", "kwargs": kw})

    gen = torch.Generator().manual_seed(99)
    coeffs = (torch_muon.DEFAULT_A, torch_muon.DEFAULT_B, torch_muon.DEFAULT_C)
    for shape in ([32, 12], [12, 32], [20, 20]):
        key = "x".join(map(str, shape))
        g = torch.randn(shape, generator=gen)
        tensors[f"ns.{key}.input"] = g
        with float32_newton_schulz():
            tensors[f"ns.{key}.f32"] = torch_muon._zeropower_via_newtonschulz(g, coeffs, 5, torch_muon.EPS)
        tensors[f"ns.{key}.bf16"] = torch_muon._zeropower_via_newtonschulz(g, coeffs, 5, torch_muon.EPS).float()

    tensors = {k: v.contiguous().float() for k, v in tensors.items()}
    metadata = {
        "cases": json.dumps(cases),
        "steps": str(STEPS),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "base_rules.safetensors")
    save_file(tensors, path, metadata=metadata)
    print(f"wrote {path}: {len(tensors)} tensors, {len(cases)} cases")


if __name__ == "__main__":
    main()
