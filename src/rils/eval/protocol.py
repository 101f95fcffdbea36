"""What an evaluation protocol is, and the records of ours, read by the runner and the CLI.

Each protocol is one record here,

    ZEROSHOT = Protocol(name="zeroshot", help="...", run=lazy("zeroshot", "_run"),
                        add_arguments=_zeroshot_arguments, needs_text=True)

beside the function that adds its command-line options (and the constants those options show), and
its evaluation is a module of rils.eval (zeroshot.py, ..., dense/detect.py). `REGISTRY` (at the end)
lists the records; adding a protocol is one module with the evaluation plus its record here.
`rils eval NAME` gets a sub-command with the common options and the ones `add_arguments` adds;
`run_protocol(loaded, NAME, ...)` loads the splits the record asks for and calls `run`.

Why the records live here and not in their modules: `rils eval NAME --help` reads them, and the
modules import torch, timm and torchvision at their top; this module imports none of them (`lazy`
imports a protocol's module when its function is first called), so help takes a fraction of a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from ..methods.options import MethodOptions


@dataclass(frozen=True)
class Protocol:
    name: str
    help: str
    # run(loaded: LoadedModel, test: EvalDataset, train: EvalDataset | None, *, device, precision,
    #     extract: dict, **options) -> dict with at least "metrics". `precision` is resolved ("bf16"
    #     or "fp32"); `extract` holds the feature-extraction options (batch_size, num_workers,
    #     progress and, when `uses_feature_cache`, use_cache, cache_dir, model_id); `options` are
    #     the protocol's own (its command-line options, without the dashes). An option that ran
    #     otherwise than asked (the linear probe's epochs, raised to reach --min-steps) goes in the
    #     returned "settings" (a dict): the record's "settings" then show what ran.
    run: Callable[..., dict]
    # add_arguments(group): adds the protocol's own options with `group.add_argument(...)`.
    add_arguments: Callable[[Any], None]
    needs_text: bool = False          # needs a text tower (the model's tokenizer)
    needs_train: bool = False         # loads a train split besides the evaluated one
    uses_feature_cache: bool = True   # one cached feature vector per image (features.image_features)
    dataset_kind: str = "classification"   # what load_dataset reads: "classification" or "retrieval"
    # cli_options(options) -> options: parsed command-line values -> `run`'s keyword arguments.
    cli_options: Callable[[dict], dict] | None = None
    # resolve_options(model, options) -> options: fills defaults that depend on the model (e.g. τ1
    # from the checkpoint); the result is what `run` gets and what the record's "settings" show.
    resolve_options: Callable[[Any, dict], dict] | None = None
    # load_split(dataset, split, **options) -> dataset: for protocols whose data has its own layout
    # (the dense ones: ADE20K, COCO); replaces load_dataset. It gets the protocol's options too
    # (e.g. --train-json) and ignores those it does not use. The dataset has `split`, `cache_id`
    # and `skipped` like an EvalDataset.
    load_split: Callable[..., Any] | None = None


class lazy:
    """The function `name` of the module `module` of rils.eval (e.g. lazy("dense.detect", "load_split")),
    imported when first called."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args, **kwargs):
        return getattr(import_module(f".{self.module}", __package__), self.name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"rils.eval.{self.module}.{self.name}"


def own_loop_options(extract: dict) -> dict:
    """Of the feature-extraction options (`extract`), the ones a protocol with its own training loop
    and batch takes: data loading processes and the progress bar."""
    return {k: extract[k] for k in ("num_workers", "progress") if k in extract}


# zeroshot (zeroshot.py)

def _zeroshot_arguments(g) -> None:
    g.add_argument("--classnames", help="key of the shipped class names JSON, a JSON file, or FILE.json:KEY "
                   "(an entry of a CLIP_benchmark-style file)")
    g.add_argument("--templates", help="key of the shipped templates JSON, a JSON file, or FILE.json:KEY")


ZEROSHOT = Protocol(name="zeroshot",
                    help="zero-shot classification: top-1, top-5, mean per-class (paper Table 6)",
                    run=lazy("zeroshot", "_run"), add_arguments=_zeroshot_arguments, needs_text=True)


# retrieval (retrieval.py)

DEFAULT_KS = (1, 5, 10)


def _retrieval_arguments(g) -> None:
    g.add_argument("--recall-k", dest="ks", type=int, nargs="+", default=list(DEFAULT_KS), help="the K of each R@K reported")
    g.add_argument("--text-batch-size", type=int, default=256, help="captions encoded per batch")


RETRIEVAL = Protocol(name="retrieval", help="image-text retrieval R@1/5/10 both ways (paper Table 7)",
                     run=lazy("retrieval", "_run"), add_arguments=_retrieval_arguments, needs_text=True,
                     dataset_kind="retrieval")


# linear (linear.py)

DEFAULT_BLR = {"lars": 0.1, "sgd": 0.1, "adamw": 1e-3}
DEFAULT_BLRS = {"lars": (0.1, 1.0, 10.0), "sgd": (0.01, 0.1, 1.0), "adamw": (1e-4, 1e-3, 1e-2)}
DEFAULT_BATCH = 1024
DEFAULT_MIN_STEPS = 1000


def _linear_arguments(g) -> None:
    g.add_argument("--epochs", type=int, default=90, help="probe training epochs, at least (MAE: 90)")
    g.add_argument("--probe-batch-size", type=int, default=DEFAULT_BATCH,
                   help="probe batch size, capped at the split (MAE: 16384, which needs ImageNet-size data)")
    g.add_argument("--blr", dest="blrs", type=float, nargs="+",
                   help="base lr(s); lr = blr * batch / 256; several are chosen on held-out train data "
                        "(default: sgd 0.01 0.1 1, lars 0.1 1 10, adamw 1e-4 1e-3 1e-2)")
    g.add_argument("--optimizer", default="sgd", choices=tuple(DEFAULT_BLR),
                   help="probe optimiser (MAE: LARS, which converges only with ImageNet-scale step counts)")
    g.add_argument("--min-steps", type=int, default=DEFAULT_MIN_STEPS,
                   help="optimiser steps at least; epochs are raised to reach them (small splits)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="probe weight decay")
    g.add_argument("--warmup-epochs", type=float, default=10, help="linear warm-up of the probe lr")
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of the train split held out to pick the lr")
    g.add_argument("--seed", type=int, default=0, help="seeds the probe init, shuffling and held-out split")


LINEAR = Protocol(name="linear", help="linear probe on frozen features, MAE-style head, swept lr (paper Table 1)",
                  run=lazy("linear", "_run"), add_arguments=_linear_arguments, needs_train=True)


# fewshot (fewshot.py)

DEFAULT_SHOTS = (1, 2, 5, 10)
MSN_C = 4000.0   # MSN's λ = 0.00025 / n in scikit-learn's units
DEFAULT_CS = (1.0, 10.0, 100.0, 1000.0, MSN_C, 10000.0)


def _fewshot_arguments(g) -> None:
    g.add_argument("--shots", type=int, nargs="+", default=list(DEFAULT_SHOTS), help="labelled images per class")
    g.add_argument("--seeds", type=int, default=3, help="random draws of the few-shot set per shot count")
    g.add_argument("--C", dest="C", type=float, nargs="+", default=list(DEFAULT_CS),
                   help="inverse L2 strength(s); several are swept on held-out shots of each draw "
                        "(1-shot: MSN's 4000); MSN's λ = 0.00025/n is C = 4000")
    g.add_argument("--max-iter", type=int, default=1000, help="logistic regression iterations")


FEWSHOT = Protocol(name="fewshot", help="logistic regression on 1/2/5/10 images per class (paper Table 4)",
                   run=lazy("fewshot", "_run"), add_arguments=_fewshot_arguments, needs_train=True)


# finetune (finetune.py)

def _finetune_arguments(g) -> None:
    g.add_argument("--epochs", type=int, default=100, help="fine-tuning epochs (MAE ViT-B: 100)")
    g.add_argument("--warmup-epochs", type=float, default=5, help="linear warm-up epochs")
    g.add_argument("--train-batch-size", dest="ft_batch_size", type=int, default=1024, help="fine-tuning batch size")
    g.add_argument("--blr", type=float, default=5e-4, help="base lr at batch 256, scaled linearly")
    g.add_argument("--min-lr", type=float, default=1e-6, help="end of the cosine")
    g.add_argument("--layer-decay", type=float, default=0.65, help="layer-wise lr decay")
    g.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    g.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth")
    g.add_argument("--mixup", type=float, default=0.8, help="mixup alpha (0: off)")
    g.add_argument("--cutmix", type=float, default=1.0, help="cutmix alpha (0: off)")
    g.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    g.add_argument("--auto-augment", default="rand-m9-mstd0.5-inc1", help="'none' to disable")
    g.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
    g.add_argument("--clip-grad", type=float, help="max gradient norm (default: no clipping)")
    g.add_argument("--input-size", dest="image_size", type=int, help="default: the model's")
    g.add_argument("--seed", type=int, default=0, help="seeds the head init, augmentation and order")


def _finetune_cli_options(options: dict) -> dict:
    options = dict(options)
    options["batch_size"] = options.pop("ft_batch_size")  # --batch-size is feature extraction's
    if options.get("auto_augment") in ("none", ""):
        options["auto_augment"] = None
    return options


FINETUNE = Protocol(name="finetune", help="end-to-end fine-tuning, MAE recipe with timm (paper Table 1)",
                    run=lazy("finetune", "_run"), add_arguments=_finetune_arguments, needs_train=True,
                    uses_feature_cache=False, cli_options=_finetune_cli_options)


# patchseg (patchseg.py)

UPSAMPLE = ("bilinear", "nearest")


def _patchseg_arguments(g) -> None:
    # "%(default).0s" prints nothing: it only stops argparse from appending "(default: None)".
    g.add_argument("--tau", type=float, default=None,
                   help="τ1 of Eq. 8, the softmax temperature over the prompts (default: the checkpoint's "
                        f"loss.tau_target; {MethodOptions.tau_target} when it records none)%(default).0s")
    g.add_argument("--upsample", dest="upsample_mode", default="bilinear", choices=UPSAMPLE,
                   help="patch probabilities -> pixels")
    g.add_argument("--templates", help="JSON file or shipped key of templates for the shape classes "
                                       "(default: rils.eval.patchseg.SEG_TEMPLATES)")
    g.add_argument("--background-prompts", nargs="+", help="prompts of the background class "
                                                           "(default: rils.eval.patchseg.BACKGROUND_PROMPTS)")


PATCHSEG = Protocol(name="patchseg",
                    help="zero-shot segmentation from per-patch text distributions (Eq. 8): mIoU, pixel acc.",
                    run=lazy("patchseg", "_run"), add_arguments=_patchseg_arguments, needs_text=True,
                    uses_feature_cache=False, resolve_options=lazy("patchseg", "_resolve_options"))


# segment and detect (dense/): the fine-tune options both take, each with its recipe's defaults

def _dense_finetune_arguments(g, *, weight_decay: float, layer_decay: float, warmup_steps: int,
                              checkpoint_every: int, seed_help: str, work_dir_help: str) -> None:
    g.add_argument("--lr", type=float, default=1e-4, help="AdamW peak learning rate")
    g.add_argument("--weight-decay", type=float, default=weight_decay, help="AdamW weight decay")
    g.add_argument("--layer-decay", type=float, default=layer_decay, help="layer-wise lr decay (1: none)")
    g.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth of the trunk")
    g.add_argument("--warmup-steps", type=int, default=warmup_steps, help="linear warm-up iterations")
    g.add_argument("--seed", type=int, default=0, help=seed_help)
    g.add_argument("--work-dir", help=work_dir_help)
    g.add_argument("--resume", action="store_true", help="continue the fine-tune in --work-dir")
    g.add_argument("--checkpoint-every", type=int, default=checkpoint_every, help="iterations between checkpoints")


# segment (dense/segment.py)

SEGMENT_STEPS = 160_000   # MMSeg's 160k iterations


def _segment_arguments(g) -> None:
    g.add_argument("--steps", type=int, help=f"fine-tuning iterations (default: {SEGMENT_STEPS:,}, MMSeg's 160k)")
    g.add_argument("--epochs", type=float, help="alternative to --steps: passes over the training images")
    g.add_argument("--batch", dest="batch_size", type=int, default=16,
                   help="global batch, split over the processes (MMSeg: 8 GPUs x 2)")
    g.add_argument("--size", dest="image_size", type=int, default=512,
                   help="crop and sliding window; images are rescaled to (4*size, size)")
    _dense_finetune_arguments(g, weight_decay=0.05, layer_decay=0.65, warmup_steps=1500, checkpoint_every=2000,
                              seed_help="seeds the heads, data order and augmentation",
                              work_dir_help="fine-tune checkpoints go to WORK_DIR/checkpoints (default: none)")
    g.add_argument("--head-channels", type=int, default=768, help="UperNet channels (MMSeg's MAE and BEiT configs: 768)")
    g.add_argument("--aux-weight", type=float, default=0.4, help="auxiliary FCN head's loss weight (0: no head)")
    g.add_argument("--stride", type=int, help="sliding-window stride (default: round(2/3 * size), 341 at 512)")
    g.add_argument("--save-predictions", metavar="DIR", help="one label PNG per evaluated image")


SEGMENT = Protocol(name="segment", help="semantic segmentation: UperNet fine-tuning, MMSeg's MAE recipe "
                                         "(paper Table 3; ADE20K layout)",
                   run=lazy("dense.segment", "_run"), add_arguments=_segment_arguments, needs_train=True,
                   uses_feature_cache=False, dataset_kind="segmentation",
                   load_split=lazy("dense.seg_data", "load_split"))


# detect (dense/detect.py)

def _detect_arguments(g) -> None:
    g.add_argument("--train-json", help="training annotations (default: DATASET/annotations/instances_train2017.json)")
    g.add_argument("--train-images", help="training image folder (default: DATASET/train2017)")
    g.add_argument("--val-json", help="evaluation annotations (default: DATASET/annotations/instances_val2017.json)")
    g.add_argument("--val-images", help="evaluation image folder (default: DATASET/val2017)")
    g.add_argument("--size", type=int, default=1024, help="input side: jitter crop and test padding (ViTDet: 1024)")
    g.add_argument("--batch", type=int, default=64, help="global training batch, split over the ranks")
    g.add_argument("--epochs", type=float, default=25, help="fine-tuning epochs over the training images used "
                   "(paper: 25; 12 for low-shot)")
    g.add_argument("--steps", type=int, help="fine-tuning iterations (overrides --epochs)")
    _dense_finetune_arguments(g, weight_decay=0.1, layer_decay=0.7, warmup_steps=250, checkpoint_every=1000,
                              seed_help="seeds the subset, head init, data order, jitter",
                              work_dir_help="checkpoints (and the training image ids) go here")
    g.add_argument("--clip-grad", type=float, help="max gradient norm (default: no clipping, as ViTDet)")
    g.add_argument("--window-size", type=int, help="window attention side in patches (default: 14 on "
                   "grids of 28+ patches, else the largest divisor of the grid up to half of it)")
    g.add_argument("--fpn-channels", type=int, default=256, help="SimpleFPN and head width")
    g.add_argument("--box-head-dim", type=int, default=1024, help="box head fc width")
    g.add_argument("--rpn-batch", type=int, default=256, help="anchors sampled per image for the RPN loss")
    g.add_argument("--roi-batch", type=int, default=512, help="RoIs sampled per image for the box head")
    g.add_argument("--proposals", type=int, default=1000, help="RPN proposals kept per image after NMS")
    g.add_argument("--max-dets", type=int, help="detections kept per image (default: 100; LVIS: 300)")
    g.add_argument("--score-thresh", type=float, default=0.05, help="lowest score of a kept detection")
    g.add_argument("--train-fraction", type=float, default=1.0, help="fine-tune on this random share "
                   "of the annotated training images (paper Table 5: 0.01..0.5)")
    g.add_argument("--save-predictions", help="write the val predictions as a COCO results JSON")
    g.add_argument("--eval-batch", type=int, default=4, help="images per forward pass at evaluation")


DETECT = Protocol(name="detect", help="detection + instance segmentation fine-tuning, ViTDet "
                  "Mask R-CNN (paper Tables 2, 5)", run=lazy("dense.detect", "_run"),
                  add_arguments=_detect_arguments, needs_train=True, uses_feature_cache=False,
                  dataset_kind="detection", load_split=lazy("dense.detect", "load_split"))


# In `rils eval`'s order.
REGISTRY: dict[str, Protocol] = {p.name: p for p in (ZEROSHOT, RETRIEVAL, LINEAR, FEWSHOT, FINETUNE, PATCHSEG,
                                                     SEGMENT, DETECT)}
