"""The `rils` command: pretrain, eval, demo, presets, export, viz."""
from __future__ import annotations

import argparse
import sys

from .precision import PRECISIONS


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


def _bench(args) -> int:
    import json
    from pathlib import Path

    from .bench import bench_data, format_table, profile_step, run_bench, run_precision_bench
    if args.precision_ratio:
        report = run_precision_bench(args.preset, tuple(args.methods), args.batch, args.steps, args.warmup,
                                     args.repeats, device=args.device)
        for m, r in report["results"].items():
            print(f"{m}: bf16 {r['bf16_images_per_sec']:.1f} img/s, fp32 {r['fp32_images_per_sec']:.1f} img/s, "
                  f"bf16 speed-up {r['bf16_speedup']:.2f}x")
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        return 0
    if args.data:
        report = {m: bench_data(args.preset, method=m) for m in args.methods}
        print(json.dumps(report, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        return 0
    if args.profile:
        for m in args.methods:
            print(f"== rils:{m}\n" + profile_step(args.preset, m, args.precision, args.batch))
        if not args.no_open_clip:
            print("== open_clip:clip\n" + profile_step(args.preset, "clip", args.precision, args.batch, open_clip=True))
        return 0
    extra = {} if args.grad_clip is None else {"grad_clip": args.grad_clip}
    report = run_bench(args.preset, tuple(args.methods), args.precision, args.batch, args.steps, args.warmup,
                       args.repeats, open_clip=not args.no_open_clip, device=args.device, compile_=args.compile,
                       accum_steps=args.accum_steps, progress=lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True),
                       **extra)
    print(format_table(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


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

    p = sub.add_parser("bench", help="train-step throughput, memory and FLOPs, side by side with open_clip")
    p.add_argument("--preset", default="vit_ti8_64")
    p.add_argument("--methods", nargs="+", default=["clip", "rils"])
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 where the hardware computes it natively, else fp32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step, as train.accum_steps")
    p.add_argument("--grad-clip", type=float, default=None, help="as train.grad_clip (default: its default)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions")
    p.add_argument("--no-open-clip", action="store_true", help="skip the open_clip reference")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the step")
    p.add_argument("--out", help="write the report as JSON")
    p.add_argument("--profile", action="store_true", help="print an operator profile of one step per method instead")
    p.add_argument("--data", action="store_true", help="measure one data worker's images/s instead")
    p.add_argument("--precision-ratio", action="store_true", help="measure bf16 against fp32, interleaved, instead")
    p.set_defaults(func=_bench)

    p = sub.add_parser("presets", help="list the model presets")
    p.set_defaults(func=_presets)

    from .export import add_export_parser
    from .viz import add_viz_parser
    add_export_parser(sub)
    add_viz_parser(sub)
    from .data.prepare import add_data_parser
    add_data_parser(sub)

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
