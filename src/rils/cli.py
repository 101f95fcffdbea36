"""The `rils` command: pretrain, eval, demo, presets, export, viz."""
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
    print(f"{'preset':13s} {'input':>6s} {'patch':>5s} {'patches':>7s}  {'vision':>9s} {'params':>7s}  "
          f"{'text':>8s} {'params':>7s}  {'joint':>5s}  timm trunk")
    for name in list_presets():
        p = get_preset(name)
        n = p.param_counts()
        print(f"{name:13s} {p.image_size:4d}px {p.patch_size:5d} {p.num_patches:7d}  {p.depth:2d} x {p.width:4d} "
              f"{n['vision'] / 1e6:6.2f}M  {p.text_layers:2d} x {p.text_width:3d} {n['text'] / 1e6:6.2f}M  "
              f"{p.embed_dim:5d}  {p.timm_model_name}{'' if p.at_timm_defaults else ' with this geometry'}")
    print("params: vision = timm trunk + projection θ; text = open_clip text tower + φ (decoders not counted)")
    return 0


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.out, list(args.overrides))


def _bench(args) -> int:
    import json
    from pathlib import Path

    from .presets import list_presets
    if args.preset not in list_presets():
        print(f"rils bench: error: unknown preset {args.preset!r}; choose one of {', '.join(list_presets())}",
              file=sys.stderr)
        return 2
    from .methods import list_methods
    bad = [m for m in args.methods if m not in list_methods()]
    if bad:
        print(f"rils bench: error: unknown method {bad[0]!r}; choose from {', '.join(list_methods())}", file=sys.stderr)
        return 2
    from .bench import bench_data, format_table, profile_step, run_bench, run_compile_bench, run_precision_bench
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
    if args.compile_ratio:
        report = run_compile_bench(args.preset, tuple(args.methods), args.precision, args.batch, args.steps,
                                   args.warmup, args.repeats, device=args.device)
        print(json.dumps({m: {k: v for k, v in r.items() if k != "step_times_s"}
                          for m, r in report["results"].items()}, indent=1))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
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
                       args.repeats, open_clip=not args.no_open_clip, device=args.device,
                       compile_=args.compile or args.compile_mode != "default", compile_mode=args.compile_mode,
                       accum_steps=args.accum_steps, progress=lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True),
                       target_half_width=args.target_half_width or None, max_seconds=args.max_seconds,
                       grad_checkpointing=args.grad_checkpointing,
                       masked_grad_checkpointing=args.masked_grad_checkpointing,
                       profile_rows=25 if args.profile_out else 0, **extra)
    if args.profile_out:
        Path(args.profile_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.profile_out).write_text("".join(f"== {name}\n{table}\n" for name, table in report.pop("profiles").items()))
    if args.out:   # first: minutes of measurement are never lost to the table below
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    return 0


# Each command: its one-line help, and the function that adds its arguments. Only the command being
# run gets its arguments (and imports its module), so `rils --help` and `rils presets` need no torch.
def _add_pretrain(sub, help):
    from .train.config import pretrain_epilog
    p = sub.add_parser("pretrain", help=help, epilog=pretrain_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Pre-train a model: rils pretrain -c RECIPE [key=value ...]. Works under torchrun.")
    p.add_argument("-c", "--config", required=True, help="a recipe name (listed below) or a YAML file's path")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.batch_size=64 method=clip")
    p.set_defaults(func=_pretrain)


def _add_demo(sub, help):
    p = sub.add_parser("demo", help=help)
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for the demo recipe")
    p.set_defaults(func=_demo)


def _add_bench(sub, help):
    from .precision import PRECISIONS
    from .train.config import COMPILE_MODES
    p = sub.add_parser("bench", help=help)
    p.add_argument("--preset", default="vit_ti8_64", help="model preset (rils presets lists them)")
    p.add_argument("--methods", nargs="+", default=["clip", "rils"], help="methods to time")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 where the hardware computes it natively, else fp32")
    p.add_argument("--batch", type=int, default=64, help="images per step")
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step, as train.accum_steps")
    p.add_argument("--grad-clip", type=float, default=None, help="as train.grad_clip (default: its default)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (at least)")
    p.add_argument("--target-half-width", type=float, default=0.03,
                   help="repeat until each step-time ratio's bootstrap 95%% interval is this narrow (0: no)")
    p.add_argument("--max-seconds", type=float, default=600, help="time cap of the repetitions")
    p.add_argument("--no-open-clip", action="store_true", help="skip the open_clip reference")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--compile", action="store_true", help="torch.compile the step")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                   help="torch.compile's mode, as train.compile_mode (implies --compile unless default)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="activation checkpointing in every tower, as model.grad_checkpointing (open_clip's too)")
    p.add_argument("--masked-grad-checkpointing", action="store_true",
                   help="activation checkpointing of the masked pass and the decoder alone, as model.masked_grad_checkpointing")
    p.add_argument("--out", help="write the report as JSON")
    p.add_argument("--profile", action="store_true", help="print an operator profile of one step per method instead")
    p.add_argument("--profile-out", metavar="FILE",
                   help="after timing, write an operator profile of one more step of each timed step to FILE")
    p.add_argument("--data", action="store_true", help="measure one data worker's images/s instead")
    p.add_argument("--precision-ratio", action="store_true", help="measure bf16 against fp32, interleaved, instead")
    p.add_argument("--compile-ratio", action="store_true",
                   help="measure torch.compile against eager (speed-up, compile time), interleaved, instead")
    p.set_defaults(func=_bench)


def _add_presets(sub, help):
    sub.add_parser("presets", help=help).set_defaults(func=_presets)


def _add_eval(sub, help):
    from .eval.cli import add_eval_parser, run_eval
    add_eval_parser(sub, help)
    sub.choices["eval"].set_defaults(func=run_eval)


def _add_export(sub, help):
    from .export import add_export_parser
    add_export_parser(sub, help)


def _add_viz(sub, help):
    from .viz import add_viz_parser
    add_viz_parser(sub, help)


def _add_data(sub, help):
    from .data.prepare import add_data_parser
    add_data_parser(sub, help)


COMMANDS = {
    "pretrain": ("pre-train a model (works under torchrun)", _add_pretrain),
    "demo": ("pre-train RILS on the demo corpus, evaluate it, print a table", _add_demo),
    "eval": ("evaluate a checkpoint: zeroshot, retrieval, linear, fewshot, finetune, patchseg, segment, "
             "detect, suite", _add_eval),
    "export": ("export a checkpoint for timm (vision trunk) or open_clip (whole dual encoder)", _add_export),
    "viz": ("draw semantic maps or training curves", _add_viz),
    "data": ("dataset tools: shards from installed datasets (prepare), shards to a CSV (shards-to-csv)", _add_data),
    "bench": ("train-step throughput, memory and FLOPs, side by side with open_clip", _add_bench),
    "presets": ("list the model presets", _add_presets),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `rils` parser; only `command` (if any) gets its arguments, the others are listed."""
    from ._version import __version__
    parser = argparse.ArgumentParser(prog="rils", description="Language-supervised masked image pre-training "
                                     "(RILS, CVPR 2023) and the methods it compares with.")
    parser.add_argument("--version", action="version", version=f"rils {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, add) in COMMANDS.items():
        if name == command:
            add(sub, help)
        else:
            sub.add_parser(name, help=help)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        from .train.config import ConfigError   # imported late: it pulls in torch
        if isinstance(exc, (ConfigError, FileNotFoundError, NotADirectoryError)):
            print(f"rils: error: {exc}", file=sys.stderr)
            return 2
        raise
