"""`rils eval`: the paper's evaluation protocols from the command line.

    rils eval PROTOCOL --checkpoint CKPT --dataset DATASET [--split test] [--out FILE.json] [options]
    rils eval suite -c CONFIG.yaml [--out FILE.json] [--markdown FILE.md]

PROTOCOL is zeroshot, retrieval, linear, fewshot, finetune or patchseg; CKPT a rils checkpoint,
`open_clip:MODEL[@PRETRAINED]` or `local-dir:PATH`; DATASET `fashion-mnist`, `demo-shapes` or a
path (ImageFolder tree or CSV; see rils.eval.datasets). A suite config looks like

    checkpoint: runs/demo/checkpoints/latest.pt
    device: cpu                 # optional: any common option, a default for every entry
    evals:
      - {protocol: zeroshot, dataset: demo-shapes, options: {task: color}}
      - {protocol: fewshot, dataset: fashion-mnist, options: {shots: [1, 5], seeds: 3}}

where `options` are the command-line options of that protocol, without the dashes.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .report import markdown_table, record_table, write_json
from .runner import PROTOCOLS

_DATASET_KEYS = ("task", "num_samples", "fashion_mnist_root", "image_key", "label_key",
                 "caption_key", "csv_separator")


def _common_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", "-m", required=True,
                   help="rils checkpoint file, open_clip:MODEL[@PRETRAINED] or local-dir:PATH")
    g.add_argument("--dataset", "-d", required=True, help="fashion-mnist, demo-shapes or a path")
    g.add_argument("--split", default="test", help="evaluation split (default: test; demo-shapes: val)")
    g.add_argument("--train-split", default="train", help="training split for linear/fewshot/finetune")
    g.add_argument("--out", "-o", help="write the result as JSON to this file")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--batch-size", type=int, default=64, help="batch size of feature extraction")
    g.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="data loading processes")
    g.add_argument("--amp", action="store_true", help="run the model under bf16 autocast")
    g.add_argument("--cache-dir",
                   help="feature cache (default: $RILS_CACHE/features, else ~/.cache/rils/features)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    d = p.add_argument_group("dataset options")
    d.add_argument("--task", default="shape", choices=("shape", "color"), help="demo-shapes label")
    d.add_argument("--num-samples", type=int, help="demo-shapes: size of the evaluation split")
    d.add_argument("--num-train-samples", type=int,
                   help="demo-shapes: size of the train split (default: the corpus's, 20000)")
    d.add_argument("--demo-image-size", type=int, default=64, help="demo-shapes rendering size")
    d.add_argument("--demo-seed", type=int, default=0, help="demo-shapes corpus seed")
    d.add_argument("--fashion-mnist-root", help="folder of the Fashion-MNIST *-ubyte.gz files "
                   "(default: $RILS_FASHION_MNIST or /usr/share/datasets/fashion-mnist)")
    d.add_argument("--csv-image-key", dest="image_key", default="filepath", help="CSV image path column")
    d.add_argument("--csv-label-key", dest="label_key", default="label", help="CSV label column")
    d.add_argument("--csv-caption-key", dest="caption_key", default="caption", help="CSV caption column")
    d.add_argument("--csv-separator", default=",", help="CSV field separator (default ','; .tsv: tab)")


def _protocol_options(name: str, p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"{name} options")
    dests = []

    def add(*flags, **kwargs):  # remember which options belong to the protocol itself
        dests.append(g.add_argument(*flags, **kwargs).dest)

    if name == "zeroshot":
        add("--classnames", help="key of the shipped class names JSON, or a JSON file")
        add("--templates", help="key of the shipped templates JSON, or a JSON file")
    elif name == "retrieval":
        add("--recall-k", dest="ks", type=int, nargs="+", default=[1, 5, 10])
        add("--text-batch-size", type=int, default=256)
    elif name == "linear":
        add("--epochs", type=int, default=90)
        add("--probe-batch-size", type=int, default=16384)
        add("--blr", dest="blrs", type=float, nargs="+",
                       help="base lr(s); lr = blr * batch / 256; several: chosen on held-out train data")
        add("--optimizer", default="lars", choices=("lars", "sgd", "adamw"))
        add("--weight-decay", type=float, default=0.0)
        add("--warmup-epochs", type=float, default=10)
        add("--val-fraction", type=float, default=0.1)
        add("--seed", type=int, default=0)
    elif name == "fewshot":
        add("--shots", type=int, nargs="+", default=[1, 2, 5, 10])
        add("--seeds", type=int, default=3)
        add("--C", dest="C", type=float, default=1.0, help="inverse L2 strength")
        add("--max-iter", type=int, default=1000)
    elif name == "patchseg":
        add("--tau", type=float, default=0.04, help="τ1 of Eq. 8 (softmax temperature over the prompts)")
        add("--upsample", dest="upsample_mode", default="bilinear", choices=("bilinear", "nearest"),
            help="patch probabilities -> pixels")
        add("--templates", help="JSON file or shipped key of templates for the shape classes "
                                "(default: rils.eval.patchseg.SEG_TEMPLATES)")
        add("--background-prompts", nargs="+", help="prompts of the background class "
                                                    "(default: rils.eval.patchseg.BACKGROUND_PROMPTS)")
    elif name == "finetune":
        add("--epochs", type=int, default=100)
        add("--warmup-epochs", type=float, default=5)
        add("--train-batch-size", dest="ft_batch_size", type=int, default=1024)
        add("--blr", type=float, default=5e-4)
        add("--min-lr", type=float, default=1e-6)
        add("--layer-decay", type=float, default=0.65)
        add("--weight-decay", type=float, default=0.05)
        add("--drop-path", type=float, default=0.1)
        add("--mixup", type=float, default=0.8)
        add("--cutmix", type=float, default=1.0)
        add("--smoothing", type=float, default=0.1)
        add("--auto-augment", default="rand-m9-mstd0.5-inc1", help="'none' to disable")
        add("--reprob", type=float, default=0.25)
        add("--clip-grad", type=float)
        add("--input-size", dest="image_size", type=int, help="default: the model's")
        add("--seed", type=int, default=0)
    p.set_defaults(_protocol_dests=tuple(dests))


_HELP = {
    "zeroshot": "zero-shot classification: top-1, top-5, mean per-class (paper Table 6)",
    "retrieval": "image-text retrieval R@1/5/10 both ways (paper Table 7)",
    "linear": "linear probe on frozen features, MAE recipe (paper Table 1)",
    "fewshot": "logistic regression on 1/2/5/10 images per class (paper Table 4)",
    "finetune": "end-to-end fine-tuning, MAE recipe with timm (paper Table 1)",
    "patchseg": "zero-shot segmentation from per-patch text distributions (Eq. 8): mIoU, pixel acc.",
}


def _add_protocols(sub) -> None:
    for name in PROTOCOLS:
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        _common_options(p)
        _protocol_options(name, p)
    s = sub.add_parser("suite", help="several protocols on one checkpoint, from a YAML file")
    s.add_argument("--config", "-c", required=True, help="suite YAML")
    s.add_argument("--out", "-o", help="JSON of all results (default: the config's `out`)")
    s.add_argument("--markdown", help="markdown table (default: the JSON path with .md)")
    s.add_argument("--quiet", "-q", action="store_true")


def add_eval_parser(subparsers) -> None:
    """Register `eval` (and its protocols) on an argparse subparsers object."""
    p = subparsers.add_parser("eval", help="evaluate a checkpoint (zero-shot, retrieval, linear, "
                              "few-shot, fine-tune, patchseg)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="eval_protocol", metavar="PROTOCOL")
    _add_protocols(sub)
    p.set_defaults(func=run_eval, _eval_parser=p)


# ----------------------------------------------------------------------------- running

def _split_args(args: argparse.Namespace) -> dict:
    """Arguments of run_protocol from a parsed namespace."""
    a = vars(args)
    protocol = a["eval_protocol"]
    dataset_options = {k: a[k] for k in _DATASET_KEYS}
    dataset_options.update(image_size=a["demo_image_size"], seed=a["demo_seed"])
    options = {k: a[k] for k in a["_protocol_dests"]}
    if protocol == "finetune":
        options["batch_size"] = options.pop("ft_batch_size")
        if options.get("auto_augment") in ("none", ""):
            options["auto_augment"] = None
    extract = dict(batch_size=a["batch_size"], num_workers=a["num_workers"], use_cache=not a["no_cache"],
                   cache_dir=a["cache_dir"], progress=not a["quiet"])
    return dict(protocol=protocol, dataset=a["dataset"], split=a["split"], train_split=a["train_split"],
                dataset_options=dataset_options, num_train_samples=a["num_train_samples"],
                amp=a["amp"], extract=extract, **options)


class _Models:
    """Loads each checkpoint once (a suite evaluates one checkpoint many times)."""

    def __init__(self):
        self._loaded = {}

    def get(self, spec: str, device: str):
        from .models import load_for_eval

        if (spec, device) not in self._loaded:
            self._loaded[(spec, device)] = load_for_eval(spec, device)
        return self._loaded[(spec, device)]


def _run_one(args: argparse.Namespace, models: _Models) -> dict:
    from .models import default_device
    from .runner import run_protocol

    device = args.device or default_device()
    kwargs = _split_args(args)
    loaded = models.get(args.checkpoint, device)
    return run_protocol(loaded, device=device, **kwargs)


def _options_to_argv(options: dict) -> list[str]:
    argv = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message):  # a suite entry's mistake should name the entry, not exit
        raise ValueError(message)


def _suite(args: argparse.Namespace) -> int:
    import yaml

    config_path = Path(args.config)
    if not config_path.is_file():
        raise FileNotFoundError(f"suite config not found: {config_path}")
    config = yaml.safe_load(config_path.read_text()) or {}
    if not isinstance(config, dict) or "checkpoint" not in config or not config.get("evals"):
        raise ValueError(f"{config_path}: needs `checkpoint` and a non-empty list `evals`")
    defaults = {k: v for k, v in config.items() if k not in ("checkpoint", "evals", "out", "markdown")}
    parser = _RaisingParser(prog="rils eval")
    _add_protocols(parser.add_subparsers(dest="eval_protocol"))  # sub-parsers inherit the class
    models, records = _Models(), []
    for i, entry in enumerate(config["evals"]):
        if not isinstance(entry, dict) or set(entry) - {"protocol", "dataset", "options"} \
                or "protocol" not in entry or "dataset" not in entry:
            raise ValueError(f"{config_path}: evals[{i}] must be {{protocol, dataset, options}}, "
                             f"got {entry!r}")
        options = {**defaults, **(entry.get("options") or {})}
        if args.quiet:
            options["quiet"] = True
        argv = [str(entry["protocol"]), "--checkpoint", str(config["checkpoint"]),
                "--dataset", str(entry["dataset"]), *_options_to_argv(options)]
        try:
            ns = parser.parse_args(argv)
        except ValueError as e:
            raise ValueError(f"{config_path}: evals[{i}] ({entry['protocol']}): {e}") from None
        record = _run_one(ns, models)
        print(record_table(record), flush=True)
        records.append(record)
    table = markdown_table(records)
    print(table)
    out = args.out or config.get("out")
    markdown = args.markdown or config.get("markdown") or (Path(out).with_suffix(".md") if out else None)
    if out:
        write_json(out, {"checkpoint": str(config["checkpoint"]), "model_id": records[0]["model_id"],
                         "results": records})
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(f"# Evaluation of `{config['checkpoint']}`\n\n{table}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Run the protocol (or suite) chosen on the command line; returns the exit status."""
    protocol = getattr(args, "eval_protocol", None)
    if protocol is None:
        parser = getattr(args, "_eval_parser", None)
        (parser.print_help if parser else lambda: print(__doc__))()
        return 2
    try:
        if protocol == "suite":
            return _suite(args)
        record = _run_one(args, _Models())
    except (ValueError, FileNotFoundError) as e:
        print(f"rils eval: error: {e}", file=sys.stderr)
        return 2
    print(record_table(record))
    if args.out:
        write_json(args.out, record)
    return 0


def main(argv=None) -> int:
    """`python -m rils.eval.cli ...`, for use before the top-level `rils` command exists."""
    parser = argparse.ArgumentParser(prog="rils")
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if args.command != "eval":
        parser.print_help()
        return 2
    return run_eval(args)


if __name__ == "__main__":
    sys.exit(main())
