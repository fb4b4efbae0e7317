"""``pyro-vae posterior``: a checkpoint's guide against HMC draws (:func:`posterior_job`)."""

from ..experiments.jobs import posterior_job
from . import _options as opt


# fmt: off
def add_parser(sub):
    add = opt.command(sub, "posterior", "check a checkpoint's guide against HMC draws of the "
                      "exact posterior", checkpoint=True)
    add("--points", type=opt.positive_int, default=16, help="first test points")
    add("--num-samples", type=opt.positive_int, default=1000, help="draws per chain")
    add("--warmup-steps", type=opt.positive_int, default=500,
        help="HMC adaptation steps per chain")
    add("--chains", type=opt.positive_int, default=4, help="HMC chains per point")
    add("--seed", type=int, default=0, help="seed of the chains and guide draws")
    add("--out", default="posterior", help="output folder")
    opt.add_threads(add)
    opt.add_device(add, "run the chains")


def run(args):
    result = posterior_job(
        args.checkpoint, args.out, points=args.points, num_samples=args.num_samples,
        warmup_steps=args.warmup_steps, num_chains=args.chains, seed=args.seed,
        device=args.device, dtype=args.dtype,
    )
    print(result)
