#!/usr/bin/env python3
"""Builds the reference fixtures for `QuantizationTests`, `AdamW8bitTests` and `QGaLoreTests`.

bitsandbytes (0.50) runs on the CPU here. Two of its CPU pieces are used as they are and one
is swapped for bitsandbytes' own reference kernel:

- The dynamic maps are `bitsandbytes.functional.create_dynamic_map(signed=True/False)`.
- Block-wise quantization: bitsandbytes registers two CPU implementations of
  `bitsandbytes::quantize_blockwise`. Its native kernel (what `quantize_blockwise` calls on
  the CPU) approximates the nearest code with a 65,536-entry lookup table over [-1, 1]; its
  pure-torch reference kernel (the `default` backend: normalize by the block absmax and
  `torch.bucketize` on the midpoints of the sorted map) picks the nearest code exactly, as the
  CUDA kernels do. Subspace implements the exact rule, so the fixtures hold the reference
  kernel's codes (`<case>.codes`, reached by redispatching the op to
  CompositeExplicitAutograd) and, to measure the approximation, the native kernel's
  (`<case>.native_codes`). The script checks the reference kernel against an independent
  nearest-code computation.
- The 8-bit optimizers run bitsandbytes' CPU update (`_optimizer_update_8bit_blockwise_cpu`:
  dequantize, torch update, requantize) with its requantization routed through the reference
  kernel (the module-level `_quant_blockwise_fp32_direct` is rebound while they run); the
  `stock` Adam run keeps the native kernel, to measure how far it drifts.

Files (float32 unless said; codes and gradients are stored as float16, which holds them
exactly: the gradients are rounded to float16 before use):

`bnb_quantization.safetensors`: `map.signed`, `map.unsigned`; for each case in
{signed (1000 normal values with an all-zero second block, block 256), signed64 (the same,
block 64), unsigned (600 squared normals, block 256, unsigned map)}: `<case>.x` (not
for signed64), `<case>.codes`, `<case>.absmax`, `<case>.native_codes`, and `signed.dequant`
(`dequantize_blockwise` of the reference codes).

`bnb_adam8bit.safetensors`: `bitsandbytes.optim.AdamW8bit` (lr 0.01, weight decay 0.1, betas
(0.9, 0.999), eps 1e-8, `min_8bit_size=256`) on `big` [24, 40] (8-bit: three full blocks and
one of 192) and `small` [6, 10] (float32 path) for 4 steps: `<p>.w0`, `<p>.grad.<t>`,
`exact.<p>.w.<t>` for t in {0, 1, 3}, the final `exact.big.state1/absmax1/state2/absmax2`,
`exact.small.state1/state2`, and `stock.<p>.w.3`.

`bnb_galore8bit.safetensors`: galore-torch 1.0's `GaLoreAdamW8bit` (rank 8, gap 2, scale
0.25, lr 0.01, weight decay 0.1, `min_8bit_size=256`, so the [8, 40] projected moments are
8-bit) on a [32, 40] matrix for 4 steps: `w0`, `grad.<t>`, `w.<t>` for t in {1, 3}, final `state1`, `absmax1`,
`state2`, `absmax2`, `ortho_matrix`.

`bnb_qgalore.safetensors`: q-galore-torch 1.0's `QGaLoreAdamW8bit` (INT4 projector, group 256,
`cos_threshold` 0.4, `gamma_proj` 2, `queue_size` 2, rank 8, initial gap 1, scale 0.25, lr
0.01, weight decay 0.1, `min_8bit_size=256`) on a [32, 40] matrix for 7 steps: `w0`,
`grad.<t>`, `w.<t>` for t in {2, 6}, and the final projector (`ortho_matrix` codes,
`ortho_matrix_scales`, `ortho_matrix_zeros`, `update_proj_gap`, `svd_count`, `queue`,
`past_ortho_vector`) and 8-bit states; `int4.input` [16, 32] (its second half all positive)
with q-galore-torch's `_quantize` of it (`int4.codes`, `int4.scales`, `int4.zeros`) and the
dequantized `int4.dequant`. q-galore-torch 1.0 calls bitsandbytes'
`optimizer_update_8bit_blockwise` with the pre-0.45 argument list, which 0.50 misreads, so its
`update_step` is replaced by bitsandbytes' own `Optimizer2State.update_step` (the same
update with the current signature); the projection, INT4 quantization and lazy refresh are
q-galore-torch's code as shipped. `torch.cuda.synchronize` (called by both GaLore optimizers)
is a no-op on this CPU run.

SVDs use the sign convention of `scripts/make_galore_fixtures.py` (largest-magnitude entry of
each left singular vector positive), whose gradient generator (a drifting low-rank subspace
with well separated singular values) is reused.

Usage: `.venv/bin/python scripts/make_bnb_fixtures.py [--out DIR]`
(needs `pip install bitsandbytes galore-torch q-galore-torch`).
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_galore_fixtures as gf  # noqa: E402

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.backends.cpu.ops as cpu_ops  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from bitsandbytes.optim.optimizer import Optimizer2State  # noqa: E402

_REFERENCE = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


def reference_quantize(a, code, blocksize):
    """bitsandbytes' pure-torch quantize_blockwise kernel (its `default` backend)."""
    return torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(_REFERENCE, a, code, blocksize)


def nearest_codes(x, code, blocksize):
    """Independent check: nearest map value to x / absmax per block, ties to the lower code."""
    out = torch.empty(x.numel(), dtype=torch.long)
    for b in range(0, x.numel(), blocksize):
        blk = x[b:b + blocksize]
        m = blk.abs().max()
        scaled = blk * (1.0 / m) if m > 0 else torch.zeros_like(blk)
        if b + blocksize > x.numel() and m > 0:
            scaled = blk / m  # the reference kernel divides in the short last block
        out[b:b + blocksize] = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2)
    return out


@contextlib.contextmanager
def exact_requantization():
    original = cpu_ops._quant_blockwise_fp32_direct

    def direct(a, code, absmax_out, out_uint8, blocksize):
        out, absmax = reference_quantize(a, code, blocksize)
        out_uint8.copy_(out)
        absmax_out.copy_(absmax)

    cpu_ops._quant_blockwise_fp32_direct = direct
    try:
        yield
    finally:
        cpu_ops._quant_blockwise_fp32_direct = original


def half(t):
    return t.half().float()


def quantization_fixture():
    maps = {"signed": F.create_dynamic_map(signed=True), "unsigned": F.create_dynamic_map(signed=False)}
    g = torch.Generator().manual_seed(11)
    signed_x = 2 * torch.randn(1000, generator=g)
    signed_x[256:512] = 0
    cases = {
        "signed": (signed_x, "signed", 256),
        "signed64": (signed_x, "signed", 64),
        "unsigned": (1e-3 * torch.randn(600, generator=g) ** 2, "unsigned", 256),
    }
    out = {"map.signed": maps["signed"], "map.unsigned": maps["unsigned"]}
    stats = {}
    for name, (x, kind, bs) in cases.items():
        code = maps[kind]
        q, absmax = reference_quantize(x, code.clone(), bs)
        assert torch.equal(q.long(), nearest_codes(x, code, bs)), f"{name}: reference kernel is not the nearest code"
        native, state = F.quantize_blockwise(x, code=code.clone(), blocksize=bs)
        assert torch.equal(state.absmax, absmax)
        deq = F.dequantize_blockwise(q, absmax=absmax, code=code.clone(), blocksize=bs)
        out.update({f"{name}.codes": q.half(), f"{name}.absmax": absmax, f"{name}.native_codes": native.half()})
        if name != "signed64":  # signed64 reuses signed.x
            out[f"{name}.x"] = x
        if name == "signed":
            out[f"{name}.dequant"] = deq
        stats[name] = {"block_size": bs, "map": kind, "native_differs": int((native != q).sum())}
    return out, stats


def adam8bit_fixture():
    g = torch.Generator().manual_seed(12)
    shapes = {"big": (24, 40), "small": (6, 10)}
    scales = [1.0, 3.0, 0.2, 1.0]
    w0 = {k: 0.1 * torch.randn(*s, generator=g) for k, s in shapes.items()}
    grads = {k: [half(c * torch.randn(*s, generator=g)) for c in scales] for k, s in shapes.items()}
    out = {}
    for k in shapes:
        out[f"{k}.w0"] = w0[k]
        for t, gr in enumerate(grads[k]):
            out[f"{k}.grad.{t}"] = gr.half()

    def run(tag, exact):
        ws = {k: torch.nn.Parameter(w0[k].clone()) for k in shapes}
        opt = bnb.optim.AdamW8bit(list(ws.values()), lr=0.01, weight_decay=0.1, min_8bit_size=256)
        ctx = exact_requantization() if exact else contextlib.nullcontext()
        with ctx:
            for t in range(len(scales)):
                for k, w in ws.items():
                    w.grad = grads[k][t].clone()
                opt.step()
                for k, w in ws.items():
                    if (exact and t != 2) or t == len(scales) - 1:
                        out[f"{tag}.{k}.w.{t}"] = w.detach().clone()
        return opt, ws

    opt, ws = run("exact", True)
    big, small = opt.state[ws["big"]], opt.state[ws["small"]]
    assert big["state1"].dtype == torch.uint8 and small["state1"].dtype == torch.float32
    out.update({
        "exact.big.state1": big["state1"].half(), "exact.big.absmax1": big["absmax1"],
        "exact.big.state2": big["state2"].half(), "exact.big.absmax2": big["absmax2"],
        "exact.small.state1": small["state1"], "exact.small.state2": small["state2"],
    })
    run("stock", False)
    return out


def projection_gradients(shape, seed, steps, rank):
    gf.STEPS, gf.RANK = steps, rank
    grads = [half(gr) for gr in gf.gradients(shape, seed)]
    for t, gr in enumerate(grads):
        sv = torch.linalg.svd(gr)[1]
        gaps = [(sv[i] - sv[i + 1]) / sv[i] for i in range(rank)]
        assert min(gaps) > 0.03, f"step {t}: singular values too close after rounding"
    return grads


def galore8bit_fixture():
    from galore_torch import GaLoreAdamW8bit
    shape, rank, gap, steps = (32, 40), 8, 2, 4
    g = torch.Generator().manual_seed(13)
    w0 = 0.1 * torch.randn(*shape, generator=g)
    grads = projection_gradients(shape, 300, steps, rank)
    w = torch.nn.Parameter(w0.clone())
    opt = GaLoreAdamW8bit(
        [{"params": [w], "rank": rank, "update_proj_gap": gap, "scale": 0.25, "proj_type": "std"}],
        lr=0.01, weight_decay=0.1, min_8bit_size=256)
    out = {"w0": w0}
    with exact_requantization():
        for t, gr in enumerate(grads):
            out[f"grad.{t}"] = gr.half()
            w.grad = gr.clone()
            opt.step()
            if t in (1, 3):
                out[f"w.{t}"] = w.detach().clone()
    st = opt.state[w]
    assert st["state1"].dtype == torch.uint8 and st["state1"].shape == (rank, shape[1])
    out.update({
        "state1": st["state1"].half(), "absmax1": st["absmax1"], "state2": st["state2"].half(),
        "absmax2": st["absmax2"], "ortho_matrix": st["projector"].ortho_matrix.detach().clone(),
    })
    return out


def qgalore_fixture():
    from q_galore_torch import QGaLoreAdamW8bit

    class QGaLoreOnCurrentBnb(QGaLoreAdamW8bit):
        def update_step(self, group, p, gindex, pindex, flag_use_float_grad=False):
            Optimizer2State.update_step(self, group, p, gindex, pindex)

    shape, rank, steps = (32, 40), 8, 7
    g = torch.Generator().manual_seed(14)
    w0 = 0.1 * torch.randn(*shape, generator=g)
    grads = projection_gradients(shape, 400, steps, rank)
    w = torch.nn.Parameter(w0.clone())
    opt = QGaLoreOnCurrentBnb(
        [{"params": [w], "rank": rank, "update_proj_gap": 1, "scale": 0.25, "proj_type": "std",
          "quant": True, "quant_n_bit": 4, "quant_group_size": 256,
          "cos_threshold": 0.4, "gamma_proj": 2, "queue_size": 2}],
        lr=0.01, weight_decay=0.1, min_8bit_size=256)
    out = {"w0": w0}
    with exact_requantization():
        for t, gr in enumerate(grads):
            out[f"grad.{t}"] = gr.half()
            w.grad = gr.clone()
            opt.step()
            if t in (2, 6):
                out[f"w.{t}"] = w.detach().clone()
    st = opt.state[w]
    proj = st["projector"]
    out.update({
        "state1": st["state1"].half(), "absmax1": st["absmax1"], "state2": st["state2"].half(),
        "absmax2": st["absmax2"], "ortho_matrix": proj.ortho_matrix.reshape(proj.ortho_matrix_shape).half(),
        "ortho_matrix_scales": proj.ortho_matrix_scales.reshape(-1),
        "ortho_matrix_zeros": proj.ortho_matrix_zeros.reshape(-1),
        "update_proj_gap": torch.tensor([float(proj.update_proj_gap)]),
        "svd_count": torch.tensor([float(proj.svd_count)]),
        "queue": torch.tensor(proj.queue, dtype=torch.float32),
        "past_ortho_vector": proj.past_ortho_vector.clone(),
    })
    # The INT4 quantizer alone on a [16, 32] matrix (two groups of 256; the second all
    # positive, so its zero point is clamped).
    p0 = torch.randn(16, 32, generator=g) / 4
    p0[8:] = p0[8:].abs() + 0.05
    codes, scales, zeros, _ = proj._quantize(p0, q_group_size=256, n_bit=4)
    out.update({
        "int4.input": p0, "int4.codes": codes.reshape(p0.shape).half(), "int4.scales": scales.reshape(-1),
        "int4.zeros": zeros.reshape(-1), "int4.dequant": (scales * (codes.float() - zeros)).reshape(p0.shape),
    })
    return out, {"update_proj_gap": proj.update_proj_gap, "svd_count": proj.svd_count, "queue": proj.queue}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests/SubspaceTests/Fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.linalg.svd = gf.canonical_svd
    torch.cuda.synchronize = lambda *a, **k: None
    import galore_torch
    meta = {"torch": torch.__version__, "bitsandbytes": bnb.__version__,
            "galore_torch": getattr(galore_torch, "__version__", "1.0"), "q_galore_torch": "1.0"}
    out = Path(args.out)

    quant, stats = quantization_fixture()
    adam = adam8bit_fixture()
    galore = galore8bit_fixture()
    qgalore, qstats = qgalore_fixture()
    files = {
        "bnb_quantization": (quant, {"cases": json.dumps(stats)}),
        "bnb_adam8bit": (adam, {"config": json.dumps(
            {"lr": 0.01, "weight_decay": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "min_8bit_size": 256, "steps": 4})}),
        "bnb_galore8bit": (galore, {"config": json.dumps(
            {"rank": 8, "update_proj_gap": 2, "scale": 0.25, "lr": 0.01, "weight_decay": 0.1, "eps": 1e-8,
             "min_8bit_size": 256, "steps": 4})}),
        "bnb_qgalore": (qgalore, {"config": json.dumps(
            {"rank": 8, "update_proj_gap": 1, "scale": 0.25, "lr": 0.01, "weight_decay": 0.1, "eps": 1e-8,
             "min_8bit_size": 256, "steps": 7, "proj_bits": 4, "proj_group_size": 256,
             "cos_threshold": 0.4, "gamma_proj": 2, "queue_size": 2, "final": qstats})}),
    }
    for name, (tensors, extra) in files.items():
        path = out / f"{name}.safetensors"
        save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(path), metadata={**meta, **extra})
        print(f"wrote {path} ({len(tensors)} tensors, {path.stat().st_size} bytes)")
    print("native CPU codes differing from the nearest code:", {k: v["native_differs"] for k, v in stats.items()})
    print("q-galore final projector state:", qstats)


if __name__ == "__main__":
    main()
