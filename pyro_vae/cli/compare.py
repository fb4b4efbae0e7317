"""``pyro-vae compare``: train one VAE per objective and compare them (the main job)."""

from ..data import load_dataset
from ..experiments.compare import (
    AIS_BRIDGES,
    BDMC_POINTS,
    DEFAULT_OBJECTIVES,
    GAP_EVERY,
    GAP_FAMILIES,
    GAP_MAX_STEPS,
    NUM_SAMPLES,
    POSTERIOR_POINTS,
    compare,
)
from ..experiments.jobs import binarize_choice
from ..experiments.workers import available_cores
from ..infer.objectives import OBJECTIVE_GRAMMAR, parse_objective
from ..models.flows import GUIDE_GRAMMAR
from ..train.config import MAIN_JOB
from ..train.schedules import SCHEDULE_GRAMMAR, parse_schedule
from . import _options as opt


def guides(text):
    """--guides as a tuple of canonical specs."""
    return tuple(opt.guide(spec.strip()) for spec in text.split(",") if spec.strip())


# fmt: off
def add_parser(sub):
    add = opt.command(sub, "compare", "train one VAE per objective and compare them")
    opt.add_data(add)
    opt.add_training(add)
    opt.add_device(add)
    add("--objectives", default=",".join(DEFAULT_OBJECTIVES),
        help=f"comma-separated objective specs: {OBJECTIVE_GRAMMAR}")
    add("--guides", type=guides, default="diagonal",
        help=f"comma-separated amortized guides, each objective trained with each: {GUIDE_GRAMMAR}")
    add("--num-samples", type=opt.num_samples, default=NUM_SAMPLES, help=opt.NUM_SAMPLES_HELP)
    add("--seeds", type=opt.positive_int, default=1,
        help="train each objective with this many training seeds (--seed, --seed+1, ...), "
        "as one stack of runs, and report mean ± s.d. across them")
    add("--posterior-points", type=opt.non_negative_int, default=POSTERIOR_POINTS,
        help="test points on which each guide is checked against HMC draws of the exact "
        "posterior (0 skips the check)")
    add("--gap-families", default=",".join(GAP_FAMILIES),
        help="comma-separated per-point guide families fitted on the --posterior-points to "
        "split each gap into approximation and amortization gaps (diagonal, flow; 'none' skips "
        "the split)")
    add("--gap-max-steps", type=opt.positive_int, default=GAP_MAX_STEPS,
        help="most Adam steps of each per-point guide fit of the gap split")
    add("--ais-bridges", type=opt.non_negative_int, default=AIS_BRIDGES, old="--ais-steps",
        help="bridges of AIS from each guide on the --posterior-points (the log p(x) (AIS) "
        "column) and of the BDMC sandwich (0 skips both)")
    add("--bdmc-points", type=opt.non_negative_int, default=BDMC_POINTS,
        help="points simulated from the first objective's model for the BDMC sandwich (0: none)")
    add("--gap-every", type=opt.non_negative_int, default=GAP_EVERY,
        help="every this many epochs, estimate log p(x), the ELBO and their gap on 100 "
        "validation points (K=500) for the gap-during-training figure (0 turns it off)")
    add("--beta-schedules",
        help="comma-separated KL-weight schedules under which --beta-objective is also trained "
        f"(first seed), e.g. 0,0.5,1,4,warmup:100; each one of: {SCHEDULE_GRAMMAR}")
    add("--beta-objective",
        help="objective spec of the --beta-schedules runs (default: the first of --objectives)")
    add("--workers", type=opt.positive_int,
        help="processes that train and evaluate the runs side by side, each with --threads "
        "torch threads; the numbers are those of 1 (default: the CPU cores this process may "
        "use, at most one per run)")
    add("--out", default="results",
        help="output folder; figures a previous run recorded there and this run does not write "
        "are removed, nothing else")


def _specs(text, parse):
    """The non-empty comma-separated specs of ``text``, each checked by ``parse``."""
    specs = [s for s in (text or "").split(",") if s.strip()]
    for spec in specs:
        parse(spec)
    return specs


def run(args):
    specs = _specs(args.objectives, parse_objective)
    schedules = _specs(args.beta_schedules, parse_schedule)
    binarize = binarize_choice(args.binarize, args.likelihood)
    data = load_dataset(args.dataset, binarize, args.split_seed)
    families = tuple(f.strip() for f in args.gap_families.split(",") if f.strip())
    config = MAIN_JOB.replace(**opt.training_settings(args), num_threads=args.threads,
                              gap_every=args.gap_every or None)
    result = compare(
        data, specs, config, z_dim=args.z_dim, hidden_dims=args.hidden_dims,
        likelihood=args.likelihood, guides=args.guides, num_samples=args.num_samples,
        seeds=range(args.seed, args.seed + args.seeds), posterior_points=args.posterior_points,
        gap_families=() if families == ("none",) else families,
        gap_max_steps=args.gap_max_steps, ais_bridges=args.ais_bridges,
        bdmc_points=args.bdmc_points, beta_schedules=schedules,
        beta_objective=args.beta_objective, workers=args.workers or available_cores(),
        dtype=args.dtype)
    if data.image_shape is None:
        print(f"no image figures: the data's {data.x_dim} columns are not a square image "
              "(reconstructions, samples and latent maps are drawn for images only)")
    result.write_report(args.out)
    print(result.summary())
    meta = result.meta
    print(f"wall time {meta['wall_time_s']:.0f} s ({meta['cpu_time_s']:.0f} s CPU, torch "
          f"threads: {meta['torch_threads']}, workers: {meta['workers']}); results in {args.out}/")
