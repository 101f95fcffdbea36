"""`rils eval`: the paper's evaluation protocols from the command line.

    rils eval PROTOCOL --checkpoint CKPT --dataset DATASET [--split test] [--out FILE.json] [options]
    rils eval suite -c CONFIG.yaml [--out FILE.json] [--markdown FILE.md]

PROTOCOL is one of those listed below (rils.eval.protocol.REGISTRY); CKPT a rils checkpoint,
`open_clip:MODEL[@PRETRAINED]` or `local-dir:PATH`; DATASET `fashion-mnist`, `demo-shapes` or a
path (ImageFolder tree or CSV; see rils.eval.datasets). A suite config looks like

    checkpoint: runs/demo/checkpoints/latest.pt
    device: cpu                 # optional: any common option, a default for every entry
    evals:
      - {protocol: zeroshot, dataset: demo-shapes, options: {task: color}}
      - {protocol: fewshot, dataset: fashion-mnist, options: {shots: [1, 5], seeds: 3}}
      - {protocol: segment, dataset: data/shapes-dense/ade, options: {steps: 200, size: 64}}

where `options` are the command-line options of that protocol, without the dashes (the README's
"rils eval suite" gives the whole schema).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Only modules without torch at their top: the parsers (and so every --help) are built from these.
from ..data.prepare.fashion_mnist import DEFAULT_ROOT as FASHION_MNIST_DIR
from ..precision import PRECISIONS
from .protocol import REGISTRY, Protocol
from .report import markdown_table, record_table, write_json

_DATASET_KEYS = ("task", "num_samples", "fashion_mnist_root", "image_key", "label_key",
                 "caption_key", "csv_separator")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default once: only where it says something and the help does not already name it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def _common_options(p: argparse.ArgumentParser, proto: Protocol) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", "-m", required=True,
                   help="rils checkpoint file, open_clip:MODEL[@PRETRAINED] or local-dir:PATH")
    # A dense protocol reads its own layout (Protocol.load_split): the name and file options of the
    # other datasets, and the feature cache, do nothing for it.
    dense = proto.load_split is not None
    datasets = {"retrieval": "demo-shapes or a CSV of image path + caption",
                "segmentation": "a folder in ADE20K's layout (images/, annotations/; classes.txt or ADE20K's 150)",
                "detection": "a folder in COCO's layout (annotations/instances_{train,val}2017.json, "
                             "{train,val}2017/)"}.get(proto.dataset_kind,
                                                     "fashion-mnist, demo-shapes, an ImageFolder tree or a CSV of "
                                                     "image path + label")
    g.add_argument("--dataset", "-d", required=True, help=datasets)
    g.add_argument("--split", default="test", help="evaluation split (default: test; demo-shapes: val)" if not dense
                   else "evaluation split (default: test, i.e. validation / val2017)")
    # Options that do nothing for this protocol are still accepted (a suite's shared defaults, scripts
    # that pass the same options to every protocol) but left out of its --help.
    hide = argparse.SUPPRESS
    g.add_argument("--train-split", default="train", help="split the protocol trains on" if proto.needs_train else hide)
    g.add_argument("--out", "-o", help="write the result as JSON to this file")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--batch-size", type=int, default=64, help=hide if dense else "batch size of feature extraction")
    g.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="data loading processes")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: bf16 autocast where the device computes bf16 natively, else fp32")
    g.add_argument("--amp", dest="precision", action=_DeprecatedAmp, nargs=0, help=argparse.SUPPRESS)
    g.add_argument("--cache-dir", help=hide if dense else
                   "feature cache (default: $RILS_CACHE/features, else ~/.cache/rils/features)")
    g.add_argument("--no-cache", action="store_true", help=hide if dense else "neither read nor write cached features")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    classify = proto.dataset_kind == "classification"
    # For a dense protocol the name and file options of the other datasets are accepted, unused, unlisted.
    shown = (lambda text: hide) if dense else (lambda text: text)   # noqa: E731
    d = p.add_argument_group("--dataset demo-shapes")
    d.add_argument("--task", default="shape", choices=("shape", "color"),
                   help="what the classes are: the dominant shape's kind or its colour (default: shape)"
                   if classify else hide)
    d.add_argument("--num-samples", type=int, help=shown("size of the evaluation split (default: 1000)"))
    d.add_argument("--num-train-samples", type=int,
                   help=shown("size of the train split (default: 20000)") if proto.needs_train else hide)
    d.add_argument("--demo-image-size", type=int, default=64, help=shown("rendering size in pixels"))
    d.add_argument("--demo-seed", type=int, default=0, help=shown("corpus seed"))
    f = p.add_argument_group("--dataset fashion-mnist") if classify else d
    f.add_argument("--fashion-mnist-root", help="folder of the *-ubyte.gz files "
                   f"(default: $RILS_FASHION_MNIST or {FASHION_MNIST_DIR})" if classify else hide)
    c = p.add_argument_group("--dataset FILE.csv")
    c.add_argument("--csv-image-key", dest="image_key", default="filepath", help=shown("image path column"))
    c.add_argument("--csv-label-key", dest="label_key", default="label", help="label column" if classify else hide)
    c.add_argument("--csv-caption-key", dest="caption_key", default="caption",
                   help=hide if classify else shown("caption column"))
    c.add_argument("--csv-separator", default=",", help=shown("field separator (default ','; .tsv: tab)"))


class _DeprecatedAmp(argparse.Action):
    """`--amp`, the old spelling of `--precision bf16`."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("rils eval: --amp is deprecated; use --precision bf16", file=sys.stderr)
        setattr(namespace, self.dest, "bf16")


class _ProtocolOptions:
    """The argument group a protocol's `add_arguments` fills; remembers which options are its own."""

    def __init__(self, group):
        self.group, self.dests = group, []

    def add_argument(self, *flags, **kwargs):
        action = self.group.add_argument(*flags, **kwargs)
        self.dests.append(action.dest)
        return action


def _add_protocols(sub) -> None:
    for name, proto in REGISTRY.items():
        p = sub.add_parser(name, help=proto.help, description=proto.help, formatter_class=_HelpFormatter)
        _common_options(p, proto)
        own = _ProtocolOptions(p.add_argument_group(f"{name} options"))
        proto.add_arguments(own)
        p.set_defaults(_protocol_dests=tuple(own.dests))
    s = sub.add_parser("suite", help="several protocols on one checkpoint, from a YAML file")
    s.add_argument("--config", "-c", required=True, help="suite YAML")
    s.add_argument("--out", "-o", help="JSON of all results (default: the config's `out`)")
    s.add_argument("--markdown", help="markdown table (default: the JSON path with .md)")
    s.add_argument("--quiet", "-q", action="store_true")


def add_eval_parser(subparsers, help: str) -> None:
    """Register `eval` (and its protocols) on an argparse subparsers object."""
    p = subparsers.add_parser("eval", help=help,
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    cli_options = REGISTRY[protocol].cli_options
    if cli_options is not None:
        options = cli_options(options)
    extract = dict(batch_size=a["batch_size"], num_workers=a["num_workers"], use_cache=not a["no_cache"],
                   cache_dir=a["cache_dir"], progress=not a["quiet"])
    return dict(protocol=protocol, dataset=a["dataset"], split=a["split"], train_split=a["train_split"],
                dataset_options=dataset_options, num_train_samples=a["num_train_samples"],
                precision=a["precision"], extract=extract, **options)


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

    from .datasets import NAMES as DATASET_NAMES, resolve_split

    config_path = Path(args.config)
    if not config_path.is_file():
        raise FileNotFoundError(f"suite config not found: {config_path}")
    config = yaml.safe_load(config_path.read_text()) or {}
    if not isinstance(config, dict) or "checkpoint" not in config or not config.get("evals"):
        raise ValueError(f"{config_path}: needs `checkpoint` and a non-empty list `evals`")
    defaults = {k: v for k, v in config.items() if k not in ("checkpoint", "evals", "out", "markdown")}
    parser = _RaisingParser(prog="rils eval")
    _add_protocols(parser.add_subparsers(dest="eval_protocol"))  # sub-parsers inherit the class
    # Check every entry before running any, so a typo in the last one does not waste the others.
    parsed = []
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
        if ns.dataset not in DATASET_NAMES and not resolve_split(ns.dataset, ns.split).exists():
            raise ValueError(f"{config_path}: evals[{i}] ({entry['protocol']}): dataset {ns.dataset!r} is neither "
                             f"a known name ({', '.join(DATASET_NAMES)}) nor an existing path")
        parsed.append(ns)
    models, records = _Models(), []
    for ns in parsed:
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
    from ..distributed import rank
    if rank() != 0:   # under torchrun every rank holds the record; one prints and writes it
        return 0
    print(record_table(record))
    if args.out:
        write_json(args.out, record)
    return 0


def main(argv=None) -> int:
    """`python -m rils.eval.cli ...`, for use before the top-level `rils` command exists."""
    parser = argparse.ArgumentParser(prog="rils")
    add_eval_parser(parser.add_subparsers(dest="command"), help="evaluate a checkpoint")
    args = parser.parse_args(argv)
    if args.command != "eval":
        parser.print_help()
        return 2
    return run_eval(args)


if __name__ == "__main__":
    sys.exit(main())
