"""``pyro-vae evaluate``: a checkpoint's test-set estimates (:func:`evaluate_job`)."""

from ..experiments.compare import NUM_SAMPLES
from ..experiments.jobs import evaluate_job
from . import _options as opt


# fmt: off
def add_parser(sub):
    add = opt.command(sub, "evaluate", "evaluate a checkpoint on the test split it was trained "
                      "with", checkpoint=True)
    add("--dataset",
        help="evaluate on this data set's test split instead of the checkpoint's ('digits', "
        "'fashion-mnist[:PATH]', 'mnist:PATH' or a .npy/.npz/.csv file)")
    add("--binarize", choices=opt.BINARIZE,
        help="with --dataset: binarization of its test split (test data are binarized once, "
        "statically; 'threshold' as 1[intensity > 0.5]; 'none' keeps real values); default: "
        "threshold for a Bernoulli checkpoint trained on thresholded data, static for another "
        "Bernoulli checkpoint, none otherwise")
    add("--split-seed", type=int, help="with --dataset: the split's seed (0)")
    add("--seed", type=int, default=0, help="seed of the importance samples")
    add("--num-samples", type=opt.num_samples, default=NUM_SAMPLES, help=opt.NUM_SAMPLES_HELP)
    add("--json", help="also write the summary to this JSON file")
    opt.add_threads(add)
    opt.add_device(add, "evaluate")


def run(args):
    result = evaluate_job(
        args.checkpoint, num_samples=args.num_samples, seed=args.seed, dataset=args.dataset,
        binarize=args.binarize, split_seed=args.split_seed, device=args.device, dtype=args.dtype,
    )
    print(result)
    if args.json:
        result.write_json(args.json)
