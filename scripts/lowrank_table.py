#!/usr/bin/env python3
"""Prints the README's low-rank pre-training summary: one row per method, its best rate from
the sweep directory and, in each of the other suite directories, the final validation loss
of the method's best cell there (normally at the sweep's rate; where another rate was also
checked on that preset and did better, its rate is shown in brackets; '-' where none ran);
then, for the last directory, the validation perplexity, weights + optimizer state (the
planner's bytes) and the measured peak RSS of those cells.

  scripts/lowrank_table.py results/lowrank-300 results/lowrank-1000 results/lowrank-small

The first directory is the sweep (cells METHOD-rR@lrRATE); the others hold the full runs.
Methods match across presets with the rank taken out of the name (galore-r64 on tiny is
galore-r128 on small). Reads each directory's results.jsonl, written by `subspace bench
--suite lowrank`. Standard library only.
"""
import json
import os
import re
import sys


def load(d):
    path = os.path.join(d, "results.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        sys.exit(f"lowrank_table: cannot read {path}: {e.strerror}")


def method(cell):
    return re.sub(r"-r\d+", "", cell.split("@")[0])


def rate(cell):
    return cell.split("@lr")[1] if "@lr" in cell else None


def best_by_method(rows):
    """The cell with the lowest final validation loss of each method, in first-seen order."""
    best = {}
    for r in rows:
        loss = r.get("final_val_loss")
        if loss is None:
            continue
        m = method(r["cell"])
        if m not in best or loss < best[m]["final_val_loss"]:
            best[m] = r
    return best


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: " + next(l.strip() for l in __doc__.splitlines() if l.strip().startswith("scripts/")))
    dirs = sys.argv[1:]
    rows = {d: load(d) for d in dirs}
    sweep, others = dirs[0], dirs[1:]
    best = best_by_method(rows[sweep])
    # Per directory and method, the best cell that ran there: the sweep's rate, or another
    # rate checked on that preset (shown beside the loss when it differs).
    runs = [best_by_method(rows[d]) for d in others]

    def label(d):
        rs = rows[d]
        return f"`{rs[0]['preset']}`, {rs[0]['steps']:,} steps" if rs else d
    head = ["method", "best rate"] + [label(d) for d in dirs]
    last = rows[others[-1]][0]["preset"] if others and rows[others[-1]] else None
    if last:
        head += [f"`{last}` ppl", f"`{last}` weights + state MiB", f"`{last}` peak RSS MiB"]
    print("| " + " | ".join(head) + " |")
    print("|---|---:|" + "---:|" * (len(head) - 2))
    for m, r in best.items():
        row = [m, rate(r["cell"]), f"{r['final_val_loss']:.3f}"]
        for table in runs:
            x = table.get(m)
            moved = f" ({rate(x['cell'])})" if x and rate(x["cell"]) != rate(r["cell"]) else ""
            row.append(f"{x['final_val_loss']:.3f}{moved}" if x else "-")
        if last:
            x = runs[-1].get(m)
            mib = lambda b: f"{b / 2**20:.1f}" if b is not None else "-"
            row += [f"{x['val_ppl']:.1f}", mib(x["weights_bytes"] + x["optimizer_state_bytes"]),
                    mib(x["peak_rss_bytes"])] if x else ["-"] * 3
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
