"""``effnet train``: train a model with the paper's recipe (or fine-tune), resumable, on CPU or with torchrun.

Every recipe value is a flag; flags left unset take the recipe's value (see ``effnet.training.recipe.RECIPES``), and the
run writes the fully resolved configuration to ``OUTPUT/config.json``.
"""

from __future__ import annotations

import argparse
import sys

HELP = "Train or fine-tune a model (paper recipe: TF-RMSProp, warmup + staircase decay, EMA), resumable and DDP."

_EPILOG = """\
Recipes (flags left unset take these values):
  paper:    rmsprop_tf lr 0.016/256 images, decay 0.9, momentum 0.9, eps 1e-3, weight decay 1e-5 (conv/linear
            weights), 5 warmup epochs, x0.97 every 2.4 epochs, label smoothing 0.1, EMA 0.9999, BN momentum 0.01,
            AutoAugment (ImageNet policy)
  finetune: sgd (nesterov) lr 0.05/256 (adamw: 1e-3, wd 0.05), weight decay 1e-4, 1 warmup epoch, cosine,
            new classifier, body LR x0.1, EMA 0.999
--batch-size is the global batch (split over torchrun processes); the peak LR is --lr x batch/256.
Distributed: torchrun --nproc_per_node=N -m effnet train ... (gloo on CPU, NCCL on GPUs).
"""


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    g = parser.add_argument_group("data and model")
    g.add_argument("--data", required=True,
                   help="fashion-mnist, cifar10, cifar100, or a folder with train/ and val/ class folders")
    g.add_argument("--data-root", default=None,
                   help="folder searched first for named datasets (then $EFFNET_DATA, /usr/share/datasets, "
                        "torchvision's cache)")
    g.add_argument("--download", action="store_true", help="let torchvision download a named dataset if missing")
    g.add_argument("--model", default="efficientnet_b0", help="model name (default efficientnet_b0)")
    g.add_argument("--width", type=float, default=1.0, help="multiply the model's width coefficient (default 1)")
    g.add_argument("--depth", type=float, default=1.0, help="multiply the model's depth coefficient (default 1)")
    g.add_argument("--resolution", type=int, default=None, help="input size (default: the model's)")
    g.add_argument("--stem-stride", type=int, default=None,
                   help="stride of the stem conv (default: the model's, 2; 1 keeps detail on 32x32 inputs)")
    g.add_argument("--spec", dest="spec_file", default=None, help="NetworkSpec JSON file to train instead of --model")
    g.add_argument("--weights", default=None, help="initial weights (.safetensors or checkpoint) to fine-tune from")
    g.add_argument("--in-chans", type=int, choices=(1, 3), default=None,
                   help="input channels (default: the data's, or the --weights file's: gray repeated to RGB)")
    g.add_argument("--train-limit", type=int, default=None, help="train on a fixed random subset of N images")
    g.add_argument("--val-limit", type=int, default=None, help="evaluate on a fixed random subset of N images")
    g.add_argument("--limit-seed", type=int, default=0, help="seed choosing the --train/val-limit subsets (0)")
    r = parser.add_argument_group("run")
    r.add_argument("--epochs", type=int, required=True, help="number of epochs")
    r.add_argument("--batch-size", type=int, required=True, help="global batch size (all processes together)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--output", required=True, help="run directory (config, metrics, checkpoint, weights, plots)")
    r.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint")
    o = parser.add_argument_group("recipe (unset flags take the recipe's value)")
    o.add_argument("--recipe", choices=("paper", "finetune"), default="paper", help="recipe (default paper)")
    o.add_argument("--opt", choices=("rmsprop_tf", "rmsprop", "sgd", "adamw"), default=None, help="optimizer")
    o.add_argument("--lr", type=float, default=None, help="LR per 256 images (paper 0.016; scaled by batch/256)")
    o.add_argument("--momentum", type=float, default=None, help="momentum (paper 0.9)")
    o.add_argument("--rmsprop-decay", type=float, default=None, help="RMSProp decay (paper 0.9)")
    o.add_argument("--opt-eps", type=float, default=None, help="optimizer epsilon (paper 1e-3, inside the sqrt)")
    o.add_argument("--weight-decay", type=float, default=None, help="L2 on conv/linear weights (paper 1e-5)")
    o.add_argument("--schedule", choices=("step", "cosine", "constant"), default=None,
                   help="LR schedule after warmup (paper: step = staircase exponential decay)")
    o.add_argument("--warmup-epochs", type=float, default=None, help="linear warmup epochs (paper 5)")
    o.add_argument("--decay-rate", type=float, default=None, help="step schedule factor (paper 0.97)")
    o.add_argument("--decay-epochs", type=float, default=None, help="step schedule period in epochs (paper 2.4)")
    o.add_argument("--min-lr-ratio", type=float, default=0.0, help="cosine floor as a fraction of the peak (0)")
    o.add_argument("--label-smoothing", type=float, default=None, help="label smoothing (paper 0.1)")
    o.add_argument("--ema-decay", type=float, default=None, help="weight EMA decay, 0 = off (paper 0.9999)")
    o.add_argument("--ema-warmup", type=_bool, default=True,
                   help="use min(decay, (1+n)/(10+n)) as TF does (default true)")
    o.add_argument("--dropout", type=float, default=None, help="dropout before the classifier (default: model's)")
    o.add_argument("--drop-path", type=float, default=None, help="stochastic depth rate (default: model's)")
    o.add_argument("--bn-momentum", type=float, default=None, help="BatchNorm momentum, torch convention (0.01)")
    o.add_argument("--body-lr-scale", type=float, default=None, help="LR factor for all but the classifier")
    o.add_argument("--new-head", type=_bool, default=None, help="fresh classifier with --weights (finetune: true)")
    o.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm in eval mode while training")
    o.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    a = parser.add_argument_group("augmentation")
    a.add_argument("--augment", choices=("autoaugment", "randaugment", "none"), default=None,
                   help="policy after crop/flip (paper: autoaugment, ImageNet policy)")
    a.add_argument("--randaugment-n", type=int, default=2, help="RandAugment number of ops (2)")
    a.add_argument("--randaugment-m", type=int, default=9, help="RandAugment magnitude (9)")
    a.add_argument("--crop-scale-min", type=float, default=0.08, help="random-resized-crop minimum area (0.08)")
    a.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability (0.5)")
    a.add_argument("--random-crop", type=_bool, default=True, help="random-resized-crop (false: center crop)")
    a.add_argument("--crop-pct", type=float, default=0.875, help="evaluation crop fraction (0.875)")
    s = parser.add_argument_group("speed")
    s.add_argument("--amp", choices=("auto", "none", "bf16", "fp16"), default="auto",
                   help="autocast; fp16 uses a loss scaler (auto: bf16 on CUDA, none on CPU, where bf16 is no faster)")
    s.add_argument("--channels-last", type=_bool, nargs="?", const=True, default=None,
                   help="channels_last memory format, true/false (default: true on CPU and CUDA)")
    s.add_argument("--compile", action="store_true", help="torch.compile the model")
    s.add_argument("--grad-checkpointing", action="store_true", help="recompute stage activations in backward")
    s.add_argument("--lean-activations", type=_bool, default=True,
                   help="memory-lean BN+activation on CPU: -28%% saved activations, 0-10%% slower (default true)")
    s.add_argument("--workers", type=int, default=None, help="data loader workers (default: 0 on CPU, 8 on GPU)")
    s.add_argument("--pin-memory", type=_bool, default=None, help="pinned host memory (default: on GPU)")
    s.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (GPU only)")
    s.add_argument("--tensorboard", action="store_true", help="also log to OUTPUT/tensorboard")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] (default auto)")
    s.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms for the run")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads for the run")


def config_from_args(args: argparse.Namespace) -> object:
    """The :class:`effnet.training.trainer.TrainConfig` described by parsed arguments."""
    import dataclasses

    from effnet.training.trainer import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def run(args: argparse.Namespace) -> int:
    from effnet.io import check_output
    from effnet.training.trainer import TrainingInterrupted, fit

    check_output(args.output, folder=True, inputs={"--weights": args.weights, "--spec": args.spec_file,
                                                   "--data": args.data})  # fmt: skip
    config = config_from_args(args)
    try:
        fit(config)  # type: ignore[arg-type]
    except TrainingInterrupted as exc:
        print(f"effnet train: {exc}", file=sys.stderr)
        return 128 + exc.signum
    return 0
