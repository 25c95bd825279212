"""A small VGG on Fashion-MNIST: §3.1's per-layer comparison and Alg. 2's layer-wise pruning, with GFS.

Ye, Wu, Liu (NeurIPS 2020) prune a trained network one layer at a time from
the input: for each layer, local and global imitation run with the same
stopping rule and the one that keeps fewer channels is taken, the smaller
discrepancy on ties (Algorithm 2, §2.4); the unchosen channels are then
removed and the weights ``a_i·N`` folded into the next layer. This script

1. trains a VGG-11-BN with every width divided by ``--width-div`` (8:
   8-16-32-32-64-64-64-64 channels) on Fashion-MNIST with
   :func:`sparsejax.train.fit` (SGD with momentum, cosine learning rate);
2. with ``--compare-layers``, runs §3.1's comparison: every convolution
   layer pruned on its own (the others unpruned) by local and by global
   imitation under the same rule, and the better of both (Alg. 2's choice):
   channels kept and training loss per layer, and the loss curves
   (``--figure``, the analogue of the paper's Figure 2);
3. prunes the 8 convolution groups one after the other with
   :func:`sparsejax.structured.greedy_prune` (Alg. 2) and, for comparison,
   with greedy forward selection (``method='gfs'``, Ye et al. 2020) under the
   same rule;
4. shrinks each result physically (:func:`sparsejax.structured.shrink`) and
   fine-tunes it for ``--finetune-epochs``;

and prints the kept channels per layer, parameters, MACs and FLOPs, and test
accuracy before pruning, after pruning and after the fine-tune.

The paper's settings are the defaults: every greedy step chooses its channel
on a fresh mini-batch of 128 images (Alg. 1, line 4; §3.1's batch of 128)
drawn from ``--imitation-examples`` training images; global imitation
minimises the cross-entropy between the pruned and original outputs (as a KL
divergence) with the step ``1/(k+1)`` of eq. 8 and without the Taylor
acceleration (§3.1 turns it off); the stopping rule is the paper's: the
training cross-entropy of the pruned network (on the imitation images) at
most ``--tolerance`` above the unpruned network's, measured against the
unpruned network for every layer, so the total rise never exceeds it
(``--budget even`` gives layer ``j`` of ``J`` a cumulative ``j/J`` of it
instead, our option). The scale (a VGG-11 with 1/8 of the widths, a few
epochs on 28x28 images) is this machine's, not the paper's CIFAR-10/ImageNet.

Results (the README and FIDELITY.md summarise them): with ``--epochs 2
--train-subset 30000 --imitation-examples 512 --compare-layers --methods
none`` (the comparison alone, 250 s), global imitation keeps fewer channels
than local imitation in 5 of the 8 layers pruned on their own (20 against 32
of 64 in convs/6, 16 against 29 in convs/7), local in two (by one channel),
neither prunes convs/0; ``experiments/results/greedy_vgg_compare_layers.txt``.
Layer by layer (Alg. 2), a run with ``--methods imitation --finetune-epochs 1``
in place of ``--methods none`` (otherwise the same flags): under the single
tolerance the first three layers use all of it and convs/3-4 are kept whole;
each failed run costs ``2N`` greedy steps, so it was stopped by hand at 529 s,
before convs/5-7 (about 2.5 minutes each: the run would have passed 10
minutes, a projection); ``experiments/results/greedy_vgg_total_timeout.txt``.

Run::

    python experiments/fashion_mnist_greedy_vgg.py --compare-layers --figure layers.png
    python experiments/fashion_mnist_greedy_vgg.py --compare-layers --methods none  # §3.1 alone
    python experiments/fashion_mnist_greedy_vgg.py --quick      # under a minute (below)

``--quick`` is a smoke run, not a result: VGG-11 with 1/16 of the widths, 1 epoch on
6,400 images, 1,000 test images, mini-batches of 64 of 128 imitation images, no
fine-tune; all eight groups, both methods. Measured 2026-12 (seed 0) on 2 CPU cores:
35 s idle, 47 s shared (training 5 s, pruning 25-35 s); 75.6% test accuracy before
pruning, 71.8% (imitation) and 68.4% (gfs) after, not fine-tuned.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax

from sparsejax import data
from sparsejax.models import VGG, VGG_CONFIGS
from sparsejax.structured import greedy_prune, shrink, shrink_summary
from sparsejax.train import evaluate, fit

INPUT_SHAPE = (28, 28, 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run (35-50 s on 2 cores): widths / 16, 1 epoch on 6,400 images, "
                        "1,000 test images, 64 of 128 imitation images per step, no fine-tune")
    p.add_argument("--width-div", type=int, default=8, help="divide VGG-11's widths by this")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-subset", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on the first N test images (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate (cosine decay)")
    p.add_argument("--imitation-examples", type=int, default=1024,
                   help="training images the greedy steps draw their mini-batches from and "
                        "the stopping rule is measured on")
    p.add_argument("--minibatch", type=int, default=128,
                   help="images drawn afresh for every greedy step (Alg. 1, line 4; the "
                        "paper's 128); 0: all --imitation-examples at every step")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="the most the training loss of the pruned network may exceed the "
                        "unpruned network's (in total, over all pruned layers)")
    p.add_argument("--budget", choices=("total", "even"), default="total",
                   help="total: every layer may use what the layers before it left of the "
                        "tolerance (the paper's rule); even: layer j of J may bring the rise "
                        "to j/J of it (ours)")
    p.add_argument("--taylor-start", type=int, default=None,
                   help="global imitation's Taylor acceleration past this many picks (default: "
                        "off, as the paper's §3.1)")
    p.add_argument("--compare-layers", action="store_true",
                   help="also run §3.1's comparison: every layer pruned on its own (the others "
                        "unpruned) by local and global imitation, and the better of both")
    p.add_argument("--figure", type=str, default=None,
                   help="with --compare-layers: save the per-layer loss curves here (.png)")
    p.add_argument("--global-step", choices=("fixed", "line_search"), default="fixed",
                   help="global imitation's step: 1/(k+1) (eq. 8, the paper's) or a line "
                        "search (eq. 7)")
    p.add_argument("--groups", type=str, default=None,
                   help="comma-separated convolution groups to prune, in order (default: all "
                        "eight, convs/0 ... convs/7)")
    p.add_argument("--methods", type=str, default="imitation,gfs",
                   help="comma-separated: imitation (Alg. 2: local and global) and/or gfs; "
                        "'none' with --compare-layers: only §3.1's comparison")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no per-epoch and per-layer lines")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (("width_div", 16), ("epochs", 1), ("train_subset", 6400),
                            ("test_subset", 1000), ("imitation_examples", 128),
                            ("minibatch", 64), ("finetune_epochs", 0)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if methods == ["none"] and args.compare_layers:
        methods = []
    elif not methods or any(m not in ("imitation", "gfs") for m in methods):
        p.error(f"--methods must name imitation and/or gfs (or be 'none' with --compare-layers), "
                f"got {args.methods!r}")
    args.method_list = methods
    args.group_list = None
    if args.groups is not None:
        args.group_list = [g.strip() for g in args.groups.split(",") if g.strip()]
        known = [f"convs/{i}" for i in range(8)]
        bad = [g for g in args.group_list if g not in known]
        if not args.group_list or bad:
            p.error(f"--groups must name some of {', '.join(known)}, got {args.groups!r}")
    for name in ("width_div", "epochs", "batch_size", "imitation_examples", "test_subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.minibatch < 0 or (args.taylor_start is not None and args.taylor_start < 0):
        p.error("--minibatch and --taylor-start must be >= 0")
    if args.tolerance < 0:
        p.error("--tolerance must be >= 0")
    return args


def make_model(width_div: int, seed: int) -> VGG:
    """VGG-11-BN with widths divided by ``width_div``, 28x28x1 inputs, 10 classes."""
    import flax.nnx as nnx

    config = [v if v == "M" else max(1, int(v) // width_div) for v in VGG_CONFIGS[11]]
    return VGG(config, 10, in_channels=1, batch_norm=True, rngs=nnx.Rngs(seed))


def sgd(lr: float, steps: int) -> optax.GradientTransformation:
    return optax.sgd(optax.cosine_decay_schedule(lr, max(steps, 1)), momentum=0.9)


def imitation_data(train: data.Dataset, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` normalised training images and their labels (one shuffled batch)."""
    pipe = data.batches(train, count, train=True, seed=seed + 1, process_index=0,
                        process_count=1)
    batch = next(iter(pipe.epoch(0)))
    return batch["image"], batch["label"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda line: None) if args.quiet else print
    split = "train" if args.train_subset is None else f"train[:{args.train_subset}]"
    train_set = data.load("fashion_mnist", split)
    test_set = data.load("fashion_mnist",
                         "test" if args.test_subset is None else f"test[:{args.test_subset}]")
    n_dev = jax.device_count()
    batch = max(n_dev, args.batch_size // n_dev * n_dev)
    train_b = data.batches(train_set, batch, train=True, seed=args.seed)
    test_b = data.batches(test_set, max(n_dev, 512 // n_dev * n_dev), train=False)

    t = time.perf_counter()
    result = fit(make_model(args.width_div, args.seed), sgd(args.lr, args.epochs * len(train_b)),
                 train_b, epochs=args.epochs, eval_data=test_b, seed=args.seed, log=say)
    base = result.model
    base.eval()
    timings = {"train": time.perf_counter() - t}
    acc0 = evaluate(base, test_b)["accuracy"]
    x, y = imitation_data(train_set, args.imitation_examples, args.seed)
    rows: dict[str, Any] = {"dense": {"accuracy": acc0}}
    common = dict(loss="cross_entropy", global_step=args.global_step,
                  taylor_start=args.taylor_start, minibatch=args.minibatch or None,
                  seed=args.seed)
    layers = compare_layers(base, x, y, args, common, say) if args.compare_layers else None
    if layers is not None:
        timings["compare layers"] = layers.pop("seconds")
        print(layers_table(layers, args.tolerance))  # before the longer layer-wise pruning
        if args.figure:
            plot_layers(layers, args.figure, args.tolerance)
            print(f"figure saved to {args.figure}")
    for method in args.method_list:
        t = time.perf_counter()
        pruned = greedy_prune(base, x, y, tolerance=args.tolerance, budget=args.budget,
                              method="best" if method == "imitation" else "gfs",
                              groups=args.group_list, log=say, **common)
        timings[f"prune {method}"] = time.perf_counter() - t
        small = shrink(base, pruned)
        small.eval()
        summary = shrink_summary(base, small, INPUT_SHAPE)
        acc1 = evaluate(small, test_b)["accuracy"]
        t = time.perf_counter()
        acc2 = float("nan")
        if args.finetune_epochs > 0:
            ft = fit(small, sgd(args.finetune_lr, args.finetune_epochs * len(train_b)), train_b,
                     epochs=args.finetune_epochs, eval_data=test_b, seed=args.seed, log=None)
            acc2 = ft.final["test_accuracy"]
        timings[f"finetune {method}"] = time.perf_counter() - t
        rows[method] = {"result": pruned, "summary": summary, "accuracy": acc1,
                        "finetuned": acc2}
    return {"rows": rows, "timings": timings, "base": base, "layers": layers,
            "train_loss": result.final.get("train_loss")}


def compare_layers(base: Any, x: np.ndarray, y: np.ndarray, args: argparse.Namespace,
                   common: dict[str, Any], say: Any) -> dict[str, Any]:
    """§3.1: every layer pruned on its own by local and global imitation (and Alg. 2's choice).

    For each group, with the other groups unpruned, :func:`greedy_prune` with this one group
    runs both methods under the same rule (training loss at most ``--tolerance`` above the
    unpruned network's) and takes the one keeping fewer channels (the smaller discrepancy on
    ties). Along each run the training loss after every greedy step is recorded for the plot.
    """
    from sparsejax.structured.imitation import Evaluator

    t = time.perf_counter()
    names = args.group_list or [g.name for g in base.prunable_groups()]
    out: dict[str, Any] = {}
    for name in names:
        r = greedy_prune(base, x, y, tolerance=args.tolerance, groups=[name], method="best",
                         log=None, **common)
        ev = Evaluator(base, name, x, loss="labels", targets=y)
        curves = {}
        for m, run in r.candidates[name].items():
            gates = np.stack([run.size * run.weights_at(k) for k in range(len(run.picks))])
            curves[m] = (run.support.copy(), ev.losses(gates.astype(np.float32)))
        out[name] = {"result": r, "curves": curves}
        runs = r.candidates[name]
        say(f"{name}: local {runs['local'].n}, global {runs['global'].n} -> {r.chosen[name]}")
    out["seconds"] = time.perf_counter() - t
    return out


def layers_table(layers: dict[str, Any], tolerance: float) -> str:
    """Per layer: channels kept and training loss at the stop of local, global and the choice."""
    lines = [f"§3.1: each layer pruned on its own; rule: training loss <= unpruned + {tolerance:g} "
             "(* = not met within 2N steps: layer kept whole)",
             f"  {'group':<8} {'N':>3} {'local':>6} {'loss':>7} {'global':>6} {'loss':>7} "
             f"{'best':>7} {'kept':>4} {'loss':>7}"]
    for name, entry in layers.items():
        r = entry["result"]
        runs = r.candidates[name]
        size = r.sizes[name]

        def cell(run: Any) -> str:
            return f"{run.n}{'' if run.converged else '*'}"

        loss = {}
        for m, (_, values) in entry["curves"].items():
            loss[m] = float(values[runs[m].step])
        before, after = r.losses[name]
        kept = r.selections[name].n if name in r.selections else size
        lines.append(f"  {name:<8} {size:>3} {cell(runs['local']):>6} {loss['local']:>7.4f} "
                     f"{cell(runs['global']):>6} {loss['global']:>7.4f} "
                     f"{r.chosen[name]:>7} {kept:>4} {after:>7.4f}")
    first = next(iter(layers.values()))["result"]
    lines.append(f"  unpruned training loss {first.base_loss:.4f}")
    return "\n".join(lines)


def plot_layers(layers: dict[str, Any], path: str, tolerance: float) -> None:
    """One panel per layer: training loss against kept channels along local and global runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(layers)
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        entry = layers[name]
        base = entry["result"].base_loss
        for m, style in (("local", "o-"), ("global", "s-")):
            support, values = entry["curves"][m]
            best = {}
            for n, v in zip(support, values):
                best[int(n)] = min(best.get(int(n), np.inf), float(v))
            ns = sorted(best)
            ax.plot(ns, [best[n] for n in ns], style, ms=2, label=m)
        ax.axhline(base + tolerance, color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(f"{name} (N = {entry['result'].sizes[name]})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("channels kept", fontsize=9)
    fig.supylabel("training cross-entropy", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(out: dict[str, Any], args: argparse.Namespace) -> str:
    rows = out["rows"]
    methods = [m for m in args.method_list]
    first = rows[methods[0]]["summary"]
    lines = ["kept channels per layer (of N):"]
    head = f"  {'group':<8} {'N':>4}" + "".join(f" {m:>10}" for m in methods) + \
        ("  chosen (imitation)" if "imitation" in methods else "")
    lines.append(head)
    for name, size, _ in first.groups:
        cells = "".join(f" {dict((g, a) for g, _, a in rows[m]['summary'].groups)[name]:>10}"
                        for m in methods)
        chosen = (f"  {rows['imitation']['result'].chosen.get(name, '-')}"
                  if "imitation" in methods else "")
        lines.append(f"  {name:<8} {size:>4}{cells}{chosen}")
    lines.append("")
    lines.append(f"  {'model':<10} {'params':>9} {'MACs':>10} {'FLOPs':>11} {'test acc':>9} "
                 f"{'pruned':>8} {'fine-tuned':>11}")
    p0, m0, f0 = first.params[0], first.macs[0], first.flops[0]
    lines.append(f"  {'dense':<10} {p0:>9,} {m0:>10,} {f0:>11,.0f} "
                 f"{rows['dense']['accuracy']:>9.2%} {'':>8} {'':>11}")
    for m in methods:
        s = rows[m]["summary"]
        ft = rows[m]["finetuned"]
        tuned = "-" if np.isnan(ft) else f"{ft:.2%}"  # '-': no fine-tune (--finetune-epochs 0)
        lines.append(f"  {m:<10} {s.params[1]:>9,} {s.macs[1]:>10,} {s.flops[1]:>11,.0f} "
                     f"{'':>9} {rows[m]['accuracy']:>8.2%} {tuned:>11}")
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in out["timings"].items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = run(args)
    if args.method_list:
        print(report(out, args))
    else:
        print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in out["timings"].items()))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
