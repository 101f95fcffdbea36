"""The `rils` command: pretrain, eval, demo, presets."""
from __future__ import annotations

import argparse
import sys


def _pretrain(args) -> int:
    from .train.config import load_config
    from .train.engine import train
    cfg = load_config(args.config, args.overrides)
    try:
        train(cfg)
    except KeyboardInterrupt:
        return 130
    return 0


def _presets(args) -> int:
    from .presets import get_preset, list_presets
    for name in list_presets():
        p = get_preset(name)
        print(f"{name:14s} {p.image_size}px patch {p.patch_size}  vision {p.depth}x{p.width}  "
              f"text {p.text_layers}x{p.text_width}  embed {p.embed_dim}  timm {p.timm_model_name}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.out, list(args.overrides))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rils", description="Language-supervised masked image pre-training.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train a model (works under torchrun)")
    p.add_argument("-c", "--config", required=True, help="recipe name in configs/ or a YAML path")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.batch_size=64 method=clip")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("demo", help="pre-train RILS on the demo corpus, evaluate it, print a table")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=_demo)

    p = sub.add_parser("presets", help="list the model presets")
    p.set_defaults(func=_presets)

    try:
        from .eval.cli import add_eval_parser, run_eval
        add_eval_parser(sub)
        sub.choices["eval"].set_defaults(func=run_eval)
    except ImportError:  # evaluation extras not importable: the rest of the tool still works
        pass
    return parser


def main(argv=None) -> int:
    from .train.config import ConfigError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"rils: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError) as exc:
        print(f"rils: error: {exc}", file=sys.stderr)
        return 2
