"""``pyro-vae ais``: a checkpoint's log p(x) by AIS, beside importance sampling, and the
BDMC sandwich on data simulated from it (:func:`ais_job`)."""

from ..experiments.jobs import ais_job
from ..infer.ais import SCHEDULES, STARTS
from . import _options as opt

ais_num_samples = opt.bounded(opt.non_negative_int, "0 (no importance-sampling estimate) or K "
                              ">= 2 importance samples per point (one gives no standard error)",
                              lambda k: k != 1, hint="; use --num-samples 5000, or 0")  # fmt: skip


# fmt: off
def add_parser(sub):
    add = opt.command(sub, "ais", "a checkpoint's log p(x) by annealed importance sampling, "
                      "beside importance sampling, and the BDMC sandwich on data simulated "
                      "from it", checkpoint=True)
    add("--points", type=opt.positive_int, default=100, help="first test points")
    add("--bridges", type=opt.positive_int, default=500, old="--num-steps",
        help="AIS bridges (intermediate distributions) per chain")
    add("--chains", type=opt.positive_int, default=16, help="AIS chains per point")
    add("--start", choices=STARTS, default="guide",
        help="where the chains start: the guide q(z|x) or the prior")
    add("--schedule", choices=SCHEDULES, default="sigmoid",
        help="spacing of the bridges' inverse temperatures")
    add("--num-samples", type=ais_num_samples, default=5000,
        help="importance samples per point for the IS estimate beside AIS, >= 2 (0 skips it)")
    add("--bdmc", type=opt.non_negative_int, default=0, metavar="N",
        help="also run the BDMC sandwich (forward and reverse AIS) on N points simulated from "
        "the model (0: no)")
    add("--seed", type=int, default=0, help="seed of every draw")
    add("--json", help="also write the estimates to this JSON file")
    add("--no-progress", action="store_true", help="hide progress bars")
    opt.add_threads(add)
    opt.add_device(add, "run the chains")


def run(args):
    result = ais_job(
        args.checkpoint, points=args.points, num_bridges=args.bridges, num_chains=args.chains,
        start=args.start, schedule=args.schedule, num_samples=args.num_samples,
        bdmc_points=args.bdmc, seed=args.seed, progress=not args.no_progress,
        device=args.device, dtype=args.dtype,
    )
    print(result)
    if args.json:
        result.write_json(args.json)
