"""Cremer, Li & Duvenaud (2018), Table 2 (Fashion-MNIST), on the authors' own protocol.

    python benchmarks/bench_cremer2018.py train --guide ffg --epochs 364   # resumable
    python benchmarks/bench_cremer2018.py train --guide flow --epochs 364
    python benchmarks/bench_cremer2018.py evaluate                         # both models
    python benchmarks/bench_cremer2018.py evaluate --evaluate-only benchmarks/cremer2018/ffg.pt

``train`` trains one model in the setting :data:`pyro_vae.train.presets.CREMER2018` (the
paper's data, networks and schedule; one torch thread) up to ``--epochs``, checkpointing
every epoch to ``benchmarks/cremer2018/<guide>.pt`` (a package checkpoint: it loads with
:func:`pyro_vae.load_checkpoint`) and resuming from it when it exists, so the training can
run in the background across sessions, stage by stage of the schedule. ``evaluate`` splits
the gap of each trained model on the first ``--points`` training images (to separate
inference from generalization, as the paper) and the first ``--points`` test images:
log p̂(x) by AIS (:func:`pyro_vae.ais`, from the prior, ``--ais-bridges`` bridges; the BDMC
width on data simulated from the model is reported beside it) and by IWAE-5000 with the
amortized and the per-point guides (:func:`pyro_vae.inference_gaps`), L[q*_FFG],
L[q*_Flow], L[q], and the approximation and amortization gaps with log p̂(x) the larger of
AIS and the best IWAE-5000 (as the paper takes it), each with its Monte-Carlo s.e.; writes
``benchmarks/cremer2018.json`` (atomically).

The protocol, read from the authors' code
=========================================
Table 2 was computed with Xuechen Li's code, ``lxuechen/inference-suboptimality`` ([L],
HEAD 72242d2; its README: "Code regarding evaluation for paper"); the first author's
``chriscremer/Inference-Suboptimality`` ([C], HEAD 867a4f0) holds the side experiments
(z = 20, batch 50, 50k/10k split: none of its Fashion-MNIST settings is Table 2's).

Item by item, [L]'s value (followed here unless said) with file and line:

- *Binarization*: static threshold x/255 ≥ 0.5 on every split (``loader.py:155-166``; [C]
  ``x > .5``, ``test_different_dists/train_mnist.py:111-112``; no pixel is exactly 0.5, so
  both are raw ≥ 128). Here ``binarize="threshold"``.
- *Split*: train[:55000] / train[55000:] / t10k in file order (``loader.py:171-177``). Here
  ``split_seed=None, val_fraction=5000/70000``.
- *Networks*: z = 50; encoder 784-200-200-(2·50), decoder 50-200-200-784 (``run.py:59-60``,
  ``vae.py:45-51``); ELU hidden units in both (``run.py:86``; [C]: ELU for Fashion-MNIST,
  tanh for MNIST; we follow [L], the code of Table 2); Bernoulli logits
  (``utils/math_ops.py:63-76``).
- *Training*: batch 100 (``run.py:61-62``), one sample per point (``run.py:99``), Adam with
  ε = 1e-4 (``run.py:135-136``) at 1e-3 · 10^(−i/7) for 3^i epochs, i = 0..7, 3280 epochs
  in all (``run.py:53-54,145-154``, under ``--lr-schedule``). Here ``lr_schedule=
  "burda2016"``, ``adam_eps=1e-4``.
- *KL warm-up*: only under ``--warmup``, β = min(1, epoch/400) on the log q term alone
  (``run.py:119-124``, ``vae.py:118``). Not used here (below).
- *Early stopping*: only under ``--early-stopping``; else the last epoch is kept, as here.
- *Flow guide*: two steps of an auxiliary-variable affine coupling flow with 200-unit ELU
  networks conditioned on x, a learned q(v0|z0,x) and a reverse model r(vT|zT,x)
  (``utils/approx_posts.py:15-137``). Here ``coupling:2`` (below).
- *log p̂(x)*: AIS with 10 000 linear-schedule bridges, 100 chains from the prior, 10
  leapfrog steps, a per-chain adapted step size (``utils/ais.py:20-141``, ``utils/hmc.py``);
  IWAE with k = 5000 (``run.py:38,235-257``). Here :func:`pyro_vae.ais` (sigmoid schedule,
  ``--ais-bridges`` bridges, checked by BDMC) and IWAE-5000 from each guide.
- *Per-point FFG*: fitted from the prior, Adam 1e-3, checked every 100 steps, stopped after
  more than 10 checks without improvement (``local_ffg.py:57-126``); the package's
  :func:`pyro_vae.fit_local_guides` has the same rule.
- *Points*: the first 1000 training images (``loader.py:175``, ``utils/helper.py:10-27``).
  Here the first ``--points`` training images and the first ``--points`` test images.

What differs, and why: the flow guide is the package's conditional affine coupling (Pyro's
``conditional_affine_coupling``, hidden widths 10·z) on the FFG's draws with the encoder's
last hidden layer as context, without the paper's auxiliary variable v and its reverse
model r(v|z, x); the per-point flow q*_Flow is the package's local flow family, not [L]'s
``local_flow.py`` (which as committed imports neither of the two functions its ``main``
calls, and gives Adam only the weights, so its biases stay at their initialization). The
minibatches are reshuffled every epoch ([L] iterates fixed batches in file order; [C]
shuffles). No KL warm-up: [L] applies it only under a flag, over 400 epochs, and a run cut
at 364 epochs would never reach β = 1. AIS uses the package's sigmoid schedule with fewer
bridges than 10 000, its width checked by BDMC. Training length: two CPU cores give
``--epochs`` (the paper: 3280); that is the first difference to look at in the numbers.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from pyro_vae import ais, bdmc, inference_gaps, load_checkpoint
from pyro_vae._io import atomic_path
from pyro_vae.train.presets import CREMER2018
from pyro_vae.train.training import fit

OUT = Path(__file__).resolve().parent / "cremer2018"
TABLE = OUT.parent / "cremer2018.json"


def train_seconds(history):
    """Wall seconds of a run trained in several calls: each call's records carry the time
    since that call began, so a drop starts a new call."""
    total, last = 0.0, 0.0
    for record in history:
        if record["wall_time"] < last:
            total += last
        last = record["wall_time"]
    return total + last


def _epochs(saved):
    """Epochs a checkpoint's run has trained."""
    return saved["history"][-1]["epoch"] if saved["history"] else 0


def train(args):
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.guide}.pt"
    data = CREMER2018.load_data()
    torch.manual_seed(args.seed)
    vae = CREMER2018.build_model(args.guide)
    config = CREMER2018.train.replace(epochs=args.epochs, seed=args.seed, progress=args.progress)
    resume = path if path.exists() else None
    if resume is not None and _epochs(load_checkpoint(path)[1]) >= args.epochs:
        print(f"{path} has reached {args.epochs} epochs")
        return
    # validation on the first 1000 validation images (the monitored ELBO is not used to
    # select an epoch: the last one is kept, as the paper's code does)
    train_x = data if args.train_points is None else data.train[: args.train_points]
    run = fit(vae, train_x, config, validation=data.validation[:1000], checkpoint=path,
              checkpoint_every=1, resume=resume)  # fmt: skip
    last = run.history[-1]
    print(f"{args.guide}: epoch {last['epoch']}, train loss {last['train_loss']:.2f}, "
          f"{train_seconds(run.history):.0f} s")  # fmt: skip


GAP_FIELDS = (
    "log_px_iwae",
    "iwae_source",
    "elbo_local_ffg",
    "elbo_local_flow",
    "elbo",
    "local_steps",
    "gaps_s",
)
"""The fields of a subset's row that come from the gap split (:func:`pyro_vae.inference_gaps`),
which ``--reuse-gaps`` takes from an earlier run instead of fitting them again."""


def _gap_split(vae, x, args):
    """The gap split's fields of a row: IWAE-5000 from every guide, the ELBOs."""
    start = time.perf_counter()
    gaps = inference_gaps(vae, x, families=("diagonal", "flow"), num_samples=args.iwae_samples,
                          seed=args.seed, max_steps=args.max_steps)  # fmt: skip
    summary = gaps.summary()
    return {
        "log_px_iwae": list(summary["log_px"]),
        "iwae_source": gaps.log_px_source,
        "elbo_local_ffg": list(summary["elbo_local_diagonal"]),
        "elbo_local_flow": list(summary["elbo_local_flow"]),
        "elbo": list(summary["elbo"]),
        "local_steps": {f: g.steps for f, g in gaps.local.items()},
        "gaps_s": time.perf_counter() - start,
    }


def _subset_numbers(vae, x, guide, args, reused=None):
    """The gap table's column for ``vae`` on the points x (``reused``: the gap split's
    fields of an earlier run on the same points, :data:`GAP_FIELDS`)."""
    row = {"points": len(x)}
    row.update(_gap_split(vae, x, args) if reused is None else {k: reused[k] for k in GAP_FIELDS})
    start = time.perf_counter()
    annealed = ais(vae, x, num_bridges=args.ais_bridges, num_chains=args.ais_chains, seed=args.seed)
    row["ais_s"] = time.perf_counter() - start
    ais_mean, ais_se = annealed.summary()["log_px"]
    iwae_mean, iwae_se = row["log_px_iwae"]
    log_px, log_px_se, source = max(
        (ais_mean, ais_se, "ais"), (iwae_mean, iwae_se, row["iwae_source"])
    )
    local, local_se = row["elbo_local_ffg" if guide == "ffg" else "elbo_local_flow"]
    elbo, elbo_se = row["elbo"]
    row.update({
        "log_px": [log_px, log_px_se],
        "log_px_source": source,
        "log_px_ais": [ais_mean, ais_se],
        # the gaps at this log p̂(x); their s.e. treat the estimates as independent
        "approximation_gap": [log_px - local, (log_px_se**2 + local_se**2) ** 0.5],
        "amortization_gap": [local - elbo, (local_se**2 + elbo_se**2) ** 0.5],
    })  # fmt: skip
    return row


def _reused_rows(path, checkpoint, args):
    """The rows of ``checkpoint`` in the earlier evaluation ``path``, checked to be the gap
    split these settings would fit again (same points, samples, steps and seed)."""
    earlier = json.loads(Path(path).read_text())
    for key in ("iwae_samples", "max_steps"):
        if earlier[key] != getattr(args, key):
            raise ValueError(
                f"Expected --{key.replace('_', '-')} {earlier[key]} as in --reuse-gaps {path} "
                f"but got {getattr(args, key)}"
            )
    if earlier.get("seed", 0) != args.seed:
        raise ValueError(f"Expected --seed {earlier.get('seed', 0)} as in --reuse-gaps {path}")
    for model in earlier["models"]:
        if Path(model["checkpoint"]).name == Path(checkpoint).name:
            if model["train_points"]["points"] != args.points:
                raise ValueError(
                    f"Expected --points {model['train_points']['points']} as in --reuse-gaps "
                    f"{path} but got {args.points}"
                )
            return model
    raise ValueError(f"Expected --reuse-gaps {path} to hold {checkpoint} but it does not")


def evaluate_checkpoint(path, args):
    vae, saved = load_checkpoint(path)
    reused = _reused_rows(args.reuse_gaps, path, args) if args.reuse_gaps else {}
    train, test = "train_points", "test_points"
    guide = "flow" if vae.config.get("encoder", "diagonal") != "diagonal" else "ffg"
    data = CREMER2018.load_data()
    n = args.points
    start = time.perf_counter()
    sandwich = bdmc(vae, num_points=args.bdmc_points, num_bridges=args.ais_bridges,
                    num_chains=args.ais_chains, seed=args.seed)  # fmt: skip
    return {
        "checkpoint": os.path.relpath(path, Path(__file__).resolve().parent.parent),
        "guide": guide,
        "epochs": _epochs(saved),
        "train_s": train_seconds(saved["history"]),
        "bdmc": {"points": args.bdmc_points, "width": list(sandwich.summary()["width"]),
                 "s": time.perf_counter() - start},
        "train_points": _subset_numbers(vae, data.train[:n], guide, args, reused.get(train)),
        "test_points": _subset_numbers(vae, data.test[:n], guide, args, reused.get(test)),
    }  # fmt: skip


def evaluate(args):
    torch.set_num_threads(1)
    paths = [args.evaluate_only] if args.evaluate_only else [OUT / "ffg.pt", OUT / "flow.pt"]
    out = {
        "setting": "pyro_vae.train.presets.CREMER2018 (Cremer et al. 2018, Table 2 protocol)",
        "binarization": "threshold: 1[raw / 255 > 0.5] on every split",
        "ais_bridges": args.ais_bridges,
        "ais_chains": args.ais_chains,
        "iwae_samples": args.iwae_samples,
        "max_steps": args.max_steps,
        "seed": args.seed,
        "gaps_reused_from": args.reuse_gaps,
        "models": [evaluate_checkpoint(Path(p), args) for p in paths],
    }
    text = json.dumps(out, indent=2)
    print(text)
    target = args.out or (None if args.evaluate_only else TABLE)
    if target:
        with atomic_path(target) as tmp:
            Path(tmp).write_text(text + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one model (resumes its checkpoint)")
    t.add_argument("--guide", choices=tuple(CREMER2018.guides), required=True)
    t.add_argument("--epochs", type=int, default=364)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out-dir", default=str(OUT))
    t.add_argument("--progress", action="store_true")
    t.add_argument("--train-points", type=int, help="the first N training images (a test)")
    e = sub.add_parser("evaluate", help="the gap table of the trained models")
    e.add_argument(
        "--evaluate-only",
        metavar="CHECKPOINT",
        help="evaluate this saved model only (default: both committed models)",
    )
    e.add_argument(
        "--points",
        type=int,
        default=100,
        help="the first N training and the first N test images (default: 100)",
    )
    # --ais-steps: its name before 0.4.0 settled num_bridges for AIS (a JSON of that time
    # has "ais_steps")
    e.add_argument(
        "--ais-bridges",
        "--ais-steps",
        type=int,
        default=1000,
        help="AIS bridges, also BDMC's (default: 1000)",
    )
    e.add_argument("--ais-chains", type=int, default=16, help="AIS chains per point")
    e.add_argument(
        "--bdmc-points",
        type=int,
        default=20,
        help="points simulated from the model for the BDMC sandwich",
    )
    e.add_argument(
        "--iwae-samples",
        type=int,
        default=5000,
        help="importance samples of each IWAE log p(x) (default: 5000)",
    )
    e.add_argument(
        "--max-steps",
        type=int,
        default=20000,
        help="cap of Adam steps of each per-point guide fit (default: 20000)",
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument(
        "--reuse-gaps",
        metavar="JSON",
        help="take the gap split (IWAE, per-point and amortized ELBOs) from this "
        "earlier evaluation of the same checkpoints, points and settings, and "
        "run AIS and BDMC again (e.g. at more bridges)",
    )
    e.add_argument(
        "--out",
        help="write the JSON here (default: benchmarks/cremer2018.json for both models; "
        "with --evaluate-only, printed only, so the committed table is not replaced)",
    )
    args = parser.parse_args(argv)
    (train if args.command == "train" else evaluate)(args)


if __name__ == "__main__":
    main()
