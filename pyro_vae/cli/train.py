"""``pyro-vae train``: train one VAE and save a checkpoint (:func:`train_job`)."""

from ..experiments.jobs import LIGHTNING_STRATEGIES, train_job
from ..infer.objectives import OBJECTIVE_GRAMMAR, parse_objective
from ..models.flows import GUIDE_GRAMMAR
from ..train.config import TrainConfig
from ..train.schedules import SCHEDULE_GRAMMAR, parse_schedule
from . import _options as opt


# fmt: off
def add_parser(sub):
    add = opt.command(sub, "train", "train one VAE and save a checkpoint")
    opt.add_data(add)
    opt.add_training(add)
    opt.add_device(add, "train (without --strategy: Lightning runs use --accelerator)")
    add("--objective", default="trace", help=f"one objective spec: {OBJECTIVE_GRAMMAR}")
    add("--guide", type=opt.guide, default="diagonal",
        help=f"the amortized guide: {GUIDE_GRAMMAR}")
    add("--checkpoint", default="vae.pt", help="where to write the checkpoint")
    add("--beta", default="1",
        help=f"KL weight β or its schedule over the epochs, one of: {SCHEDULE_GRAMMAR}")
    add("--gap-every", type=opt.non_negative_int, default=0,
        help="every this many epochs, record log p(x), the ELBO and their gap on 100 validation "
        "points in the checkpoint's history (0: off)")
    add("--overwrite", action="store_true",
        help="replace an existing --checkpoint file (otherwise an existing file is an error, "
        "except the one being resumed)")
    add("--checkpoint-every", type=opt.positive_int,
        help="also write the checkpoint every this many epochs (for --resume)")
    add("--resume", metavar="CHECKPOINT",
        help="continue an interrupted run from its checkpoint: its data split, model and "
        "training settings are used; --epochs sets the total, --lr replaces the saved learning "
        "rate only if given; a run trained with --strategy continues from its Lightning "
        "checkpoint (with its strategy, devices and accelerator unless given)")
    add("--strategy", choices=LIGHTNING_STRATEGIES,
        help="train through PyTorch Lightning (pip install \"pyro-vae[lightning]\"): 'ddp' "
        "runs --devices processes on GPUs or CPUs (--accelerator cpu), each taking B/devices "
        "rows per step of the effective minibatch B = --batch-size (docs/scale.md); 'auto' one "
        "device. Lightning's checkpoint, for --resume: CHECKPOINT_STEM_lightning/last.ckpt. "
        "Default: the package's own training loop")
    add("--devices", type=opt.positive_int,
        help="with --strategy: number of devices, one process each (default 1; more than 1 "
        "needs --strategy ddp and a --batch-size divisible by it)")
    add("--accelerator", choices=("auto", "cpu", "gpu"),
        help="with --strategy: Lightning's accelerator (default auto: GPUs if there are any)")


def config(args):
    """The run's :class:`~pyro_vae.TrainConfig`; resumed, only what `train` may change."""
    settings = {**opt.training_settings(args), "gap_every": args.gap_every or None}
    if args.resume:  # the rest is the checkpoint's (train_job)
        return TrainConfig(**settings)
    loss, alpha, k = parse_objective(args.objective)
    return TrainConfig(loss, alpha, k, seed=args.seed, beta=parse_schedule(args.beta), **settings)


def run(args):
    result = train_job(
        args.checkpoint, config(args), data=args.dataset, binarize=args.binarize,
        split_seed=args.split_seed, z_dim=args.z_dim, hidden_dims=args.hidden_dims,
        likelihood=args.likelihood, guide=args.guide, resume=args.resume,
        checkpoint_every=args.checkpoint_every, overwrite=args.overwrite, dtype=args.dtype,
        strategy=args.strategy, devices=args.devices, accelerator=args.accelerator,
    )
    if result.main_process:  # the other processes of a DDP run stay quiet
        print(result)
