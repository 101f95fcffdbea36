"""Typed configuration: dataclasses are the single source of truth; YAML recipes and `key=value`
overrides are checked against them. Every bad input raises ConfigError with a one-line message
that names the key; the CLI turns it into exit status 2."""
from __future__ import annotations

import dataclasses
import math
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..methods.options import CONTRASTIVE_GATHERS, MethodOptions
from ..presets import Preset

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad configuration; the message is always one line (line breaks in echoed input are escaped)."""

    def __init__(self, message: str):
        super().__init__(_one_line(str(message)))


def _one_line(text: str) -> str:
    """Escape every character that str.splitlines() (or a terminal) would break a line at."""
    return "".join(c.encode("unicode_escape").decode("ascii") if c.splitlines() != [c] else c for c in text)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def _show(value) -> str:
    """repr of a user-supplied value, bounded in size (a YAML alias bomb is not printed in full)."""
    try:
        return _REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


@dataclass
class ModelConfig:
    preset: str = "vit_b16"       # architecture: `rils presets` lists them
    drop_path: float = 0.0        # stochastic depth in the vision trunk
    grad_checkpointing: bool = False  # activation checkpointing (large presets)
    masked_grad_checkpointing: bool = False  # activation checkpointing of the masked pass and the decoder alone (implied by grad_checkpointing)
    lock_image: bool = False      # LiT: freeze the image tower (trunk and θ); no gradient, no optimiser state
    lock_image_unlocked_groups: int = 0  # with lock_image: the last N trunk blocks (and the final norm, N >= 1) stay trainable
    lock_text: bool = False       # freeze the text tower (the logit scale stays trainable)
    teacher: str = ""             # clip_target_mim: the frozen CLIP-style run (checkpoint or export) whose image features are the targets
    quick_gelu: bool = Preset.quick_gelu  # text tower activation: QuickGELU (OpenAI CLIP's, the authors'); false: open_clip's GELU, as runs before this key


@dataclass
class DataConfig:
    source: str = "demo"          # demo | shards | csv | folder
    path: str = ""                # shard brace pattern, CSV file, or folder
    num_samples: int = 0          # epoch size; 0 = count it (shards) or use all (others)
    resampled: bool = False       # shards drawn with replacement (multi-node runs)
    shuffle_buffer: int = 1000    # sample shuffle buffer per worker (shards)
    workers: int = 2              # data loader processes per rank; a recipe's value (paper_b16: 8) or this default is capped at this machine's CPUs shared by its ranks; data.workers=N on the command line is used as given
    min_crop_scale: float = 0.5   # random resized crop scale range (min, 1)
    unique_captions: bool = False  # csv/folder: no two samples of an accumulated global batch share a caption (duplicates wait for a later batch)
    demo_one_color: bool = False  # demo source: every shape of an image in the dominant one's colour
    demo_colorless_captions: float = 0.0  # demo source: share of captions that name shapes without colours
    demo_max_shapes: int = 3      # demo source: at most this many shapes per image (1-3)
    csv_image_key: str = "filepath"  # CSV column of image paths
    csv_caption_key: str = "caption"  # CSV column of captions
    csv_separator: str = ","      # CSV field separator


@dataclass
class TrainConfig:
    batch_size: int = 128         # images per rank and micro-batch
    epochs: int = 25              # passes over the data (num_samples)
    max_steps: int = 0            # stop after this many steps (0 = run all epochs)
    lr: float = 5e-4              # at `lr_base_batch`, linearly scaled to the global batch
    lr_base_batch: int = 4096     # the global batch at which `lr` is given
    min_lr: float = 0.0           # end of the cosine
    warmup_start_lr: float = 0.0  # lr of the first warm-up step (SLIP's --lr-start); 0: the ramp starts one step before the first, so no step runs at lr 0
    warmup_epochs: float = 1.0    # linear warm-up
    warmup_steps: int = 0         # if > 0, overrides warmup_epochs
    weight_decay: float = 0.5     # AdamW; none on 1-D parameters and each method's no_weight_decay()
    beta1: float = 0.9            # AdamW
    beta2: float = 0.98           # AdamW
    eps: float = 1e-6             # AdamW
    grad_clip: float = 1.0        # max global grad norm; 0 = off
    accum_steps: int = 1          # gradient accumulation: micro-batches per optimiser step
    accum_negatives: bool = True  # with accum_steps > 1: negatives, RILS's set C and prototypes from the whole accumulated batch; false = each micro-batch alone
    precision: str = "auto"       # auto | bf16 | fp16 | tf32 | fp32 (auto: bf16 where the hardware has it natively)
    compile: bool = False         # torch.compile the training step (on a CPU with deterministic kernels: exact resume)
    compile_mode: str = "default"  # with compile: default | reduce-overhead (CUDA graphs, GPU only) | max-autotune | max-autotune-no-cudagraphs
    checkpoint_every: int = 1000  # steps between periodic checkpoints
    max_bad_steps: int = 20       # stop after this many consecutive steps with a non-finite loss/gradient
    keep_checkpoints: int = 3     # periodic ones kept besides latest.pt
    log_every: int = 10           # steps between metrics.jsonl lines
    device: str = "auto"          # auto | cpu | cuda


@dataclass
class LoggingConfig:
    tensorboard: bool = True      # TensorBoard events in <output_dir>/tb (metrics.jsonl is always written)
    wandb: bool = False           # Weights & Biases: the metrics.jsonl values and the config; needs `pip install 'rils[wandb]'`; WANDB_MODE=offline works without network
    wandb_project: str = "rils"   # W&B project
    wandb_entity: str = ""        # W&B team or user; "" = your default
    wandb_name: str = ""          # W&B run name; "" = the output folder's name


@dataclass
class Config:
    method: str = "rils"          # rils, rils_prototypes, clip, mae, mae_clip, slip, simclr, clip_target_mim
    output_dir: str = "runs/default"  # run folder
    seed: int = 0                 # model init, data order, augmentations and masks
    resume: str = ""              # "" | latest | path to a checkpoint
    resume_override: list[str] = field(default_factory=list)  # keys that define the run (train.lr, train.batch_size, ...) a resume may change; applied for real and logged in config_history.yaml
    overwrite: bool = False       # move an earlier run in output_dir aside (output_dir.old-<time>) and start over
    init_from: str = ""           # start from another run's weights (checkpoint, timm .safetensors, open_clip folder / local-dir:); fresh optimiser, schedule and step; resume wins
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: MethodOptions = field(default_factory=MethodOptions)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(key: str, value, typ):
    origin = typing.get_origin(typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                pass
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {_show(value)}")
            return number
    elif typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is list:   # `key=[a,b]` on the command line, a YAML list, or "a,b"
        items = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            return list(items)
    elif origin is None and dataclasses.is_dataclass(typ):
        if isinstance(value, dict):
            return value
    raise ConfigError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {_show(value)}")


def _leaf_keys(obj, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass instance (train.batch_size, ...), in declaration order."""
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        keys += _leaf_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return keys


def _did_you_mean(key: str, known: list[str]) -> str:
    """' (did you mean train.batch_size?)' for a near miss: the whole dotted key close to a known one
    (train.batchsize, trian.batch_size), else its last part equal or close to a known key's (lr -> train.lr)."""
    import difflib

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if not close:
        last = key.rsplit(".", 1)[-1]
        tails = {k.rsplit(".", 1)[-1]: k for k in reversed(known)}   # the first key with that last part
        close = [tails[t] for t in difflib.get_close_matches(last, list(tails), n=1, cutoff=0.8)]
    return f" (did you mean {close[0]}?)" if close else ""


def _apply(obj, data: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    for k, v in data.items():
        key = f"{prefix}{k}"
        if not isinstance(k, str) or k not in hints:
            # The key as the user wrote it: a mapping below an unknown section is one of its dotted keys.
            typed = key
            while isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v)), str):
                k2, v = next(iter(v.items()))
                typed += f".{k2}"
            hint = _did_you_mean(typed, _leaf_keys(obj, prefix)) if isinstance(k, str) else ""
            raise ConfigError(f"unknown config key {_show(typed)}{hint}")
        typ = hints[k]
        if dataclasses.is_dataclass(typ):
            if not isinstance(v, dict):
                raise ConfigError(f"{key}: expected a mapping of options, got {_show(v)}")
            _apply(getattr(obj, k), v, key + ".")
        else:
            setattr(obj, k, _coerce(key, v, typ))


def _parse_override(item: str) -> dict:
    if "=" not in item:
        raise ConfigError(f"override {_show(item)} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {_show(item)} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except Exception:  # not YAML (or YAML that Python cannot hold: deep nesting, a 5000-digit int)
        value = raw
    if value is None:
        value = ""
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _is_file(path) -> bool:
    """Path.is_file that answers False, not ValueError/OSError, for a name the OS cannot hold
    (a NUL byte, a name too long)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _exists(path) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


# torch.compile's modes (`train.compile_mode`, `rils bench --compile-mode`): "reduce-overhead" replays CUDA
# graphs (on a GPU; a CPU compiles as "default"), the max-autotune ones also time kernel choices (minutes
# more to compile). Here, not in step.py that uses them, so that `rils bench --help` needs no torch.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

PAPER_RECIPE = "paper_b16"   # `-c METHOD` is this recipe with method=METHOD, output_dir=runs/METHOD


# Table 9's two-stage recipes, as the paper recipe's second stage: (first-stage method, what the
# second stage sets, the key that names the first stage's run). The first stage is a plain run
# (`-c mae`, `-c clip`); the split of the budget between the stages is the user's (the paper gives
# none; benchmarks/studies/two_stage/run.sh halves it).
TWO_STAGE = {
    "mim_to_lit": ("mae", {"method": "clip", "model": {"lock_image": True}}, "init_from"),
    "mim_to_clip": ("mae", {"method": "clip"}, "init_from"),
    "clip_to_mim": ("clip", {"method": "clip_target_mim"}, "model.teacher"),
}


def list_recipes() -> list[str]:
    """Recipe files, one alias per registered method (the paper recipe with that method) and the
    two-stage recipes."""
    from ..methods import list_methods
    return sorted({p.stem for p in CONFIG_DIR.glob("*.yaml")} | set(list_methods()) | set(TWO_STAGE))


def _method_alias(name: str) -> dict | None:
    from ..methods import list_methods
    if _is_file(CONFIG_DIR / f"{name}.yaml"):
        return None
    if name in list_methods():
        return {"method": name, "output_dir": f"runs/{name}"}
    if name in TWO_STAGE:
        return {**TWO_STAGE[name][1], "output_dir": f"runs/{name}"}
    return None


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe name wins (even over a folder of that name in the working directory) unless the
    argument is a YAML file's path."""
    path = Path(name_or_path)
    is_name = path.suffix not in (".yaml", ".yml") and len(path.parts) == 1
    if is_name and _is_file(CONFIG_DIR / f"{name_or_path}.yaml"):
        return CONFIG_DIR / f"{name_or_path}.yaml"
    if is_name and _method_alias(name_or_path) is not None:
        return CONFIG_DIR / f"{PAPER_RECIPE}.yaml"
    if path.suffix in (".yaml", ".yml") or _is_file(path):
        if not _is_file(path):
            raise ConfigError(f"config file not found: {_show(str(path))}")
        return path
    raise ConfigError(f"unknown recipe {_show(name_or_path)}; recipes: {', '.join(list_recipes())}")


def load_config(recipe: str | None = None, overrides: list[str] = ()) -> Config:
    cfg = Config()
    if recipe:
        path = resolve_recipe(recipe)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({(str(exc).splitlines() or [''])[0]})") from None
        except Exception as exc:  # nesting too deep, an int too long for Python, ...
            raise ConfigError(f"{path}: not a usable YAML file ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        _apply(cfg, data)
        alias = _method_alias(recipe) if path.parent == CONFIG_DIR and path.stem == PAPER_RECIPE else None
        if alias:
            _apply(cfg, alias)
    given = set()
    for item in overrides:
        parsed = _parse_override(item)
        _apply(cfg, parsed)
        given |= _flat_keys(parsed)
    if "data.workers" not in given:   # a value typed on the command line is the user's: used as given
        cfg.data.workers = machine_workers(cfg.data.workers)
    if recipe in TWO_STAGE and not cfg.resume:
        first, _, key = TWO_STAGE[recipe]
        if not eval_key(cfg, key):
            raise ConfigError(f"{recipe} is the second stage of a two-stage recipe: set {key}= to a {first} run's "
                              f"checkpoint (e.g. {key}=runs/{first}/checkpoints/latest.pt)")
    validate(cfg)
    return cfg


def _flat_keys(tree: dict, prefix: str = "") -> set[str]:
    """Every dotted key an override sets ({"data": {"workers": 8}} -> data, data.workers)."""
    keys = set()
    for k, v in tree.items():
        keys.add(f"{prefix}{k}")
        if isinstance(v, dict):
            keys |= _flat_keys(v, f"{prefix}{k}.")
    return keys


def available_cpus() -> int:
    """The CPUs this process may run on, counted as PyTorch's DataLoader counts them when it warns
    about too many workers (the affinity mask where the OS has one)."""
    import os
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # macOS, Windows
        return os.cpu_count() or 1


def machine_workers(requested: int) -> int:
    """A recipe's (or the default) `data.workers` on this machine: at most its CPUs shared by the ranks
    torchrun starts on it (LOCAL_WORLD_SIZE). paper_b16's 8 suits a GPU node; on a 2-core machine it
    made the DataLoader warn on every run and the workers wait for cores the training step needs."""
    import os
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        ranks = 1
    return min(requested, max(1, available_cpus() // ranks))


def validate(cfg: Config) -> None:
    from ..methods import METHODS, get_method_class
    from ..precision import DEVICES, PRECISIONS
    from ..presets import list_presets

    if cfg.method not in METHODS:
        raise ConfigError(f"method: unknown method {_show(cfg.method)}; choose one of {', '.join(sorted(METHODS))}")
    if cfg.model.preset not in list_presets():
        raise ConfigError(f"model.preset: unknown preset {_show(cfg.model.preset)}; choose one of {', '.join(list_presets())}")
    if not 0.0 < cfg.loss.mask_ratio < 1.0:
        raise ConfigError(f"loss.mask_ratio: must be in (0, 1), got {cfg.loss.mask_ratio}")
    checks = [
        ("train.batch_size", cfg.train.batch_size >= 1, "must be >= 1"),
        ("train.accum_steps", cfg.train.accum_steps >= 1, "must be >= 1"),
        ("train.epochs", cfg.train.epochs >= 1 or cfg.train.max_steps > 0, "must be >= 1 (or set train.max_steps)"),
        ("train.max_steps", cfg.train.max_steps >= 0, "must be >= 0"),
        ("train.lr", cfg.train.lr > 0, "must be > 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, "must be >= 0"),
        ("train.warmup_start_lr", cfg.train.warmup_start_lr >= 0, "must be >= 0"),
        ("train.checkpoint_every", cfg.train.checkpoint_every >= 1, "must be >= 1"),
        ("train.max_bad_steps", cfg.train.max_bad_steps >= 1, "must be >= 1"),
        ("train.log_every", cfg.train.log_every >= 1, "must be >= 1"),
        ("train.precision", cfg.train.precision in PRECISIONS, f"must be {', '.join(PRECISIONS)}"),
        ("train.device", cfg.train.device in DEVICES, f"must be {', '.join(DEVICES)}"),
        ("train.compile_mode", cfg.train.compile_mode in COMPILE_MODES, f"must be {', '.join(COMPILE_MODES)}"),
        ("data.source", cfg.data.source in ("demo", "shards", "csv", "folder"), "must be demo, shards, csv or folder"),
        ("data.workers", cfg.data.workers >= 0, "must be >= 0"),
        ("data.num_samples", cfg.data.num_samples >= 0, "must be >= 0"),
        ("data.demo_colorless_captions", 0.0 <= cfg.data.demo_colorless_captions <= 1.0, "must be in [0, 1]"),
        ("data.demo_max_shapes", cfg.data.demo_max_shapes in (1, 2, 3), "must be 1, 2 or 3"),
        ("loss.tau_target", cfg.loss.tau_target > 0, "must be > 0"),
        ("loss.tau_pred", cfg.loss.tau_pred > 0, "must be > 0"),
        ("loss.num_prototypes", cfg.loss.num_prototypes >= 1, "must be >= 1"),
        ("loss.contrastive_gather", cfg.loss.contrastive_gather in CONTRASTIVE_GATHERS,
         f"must be {' or '.join(CONTRASTIVE_GATHERS)}"),
        ("resume", cfg.resume in ("", "latest") or _is_file(cfg.resume), "must be '', 'latest' or a checkpoint file"),
        ("init_from", not cfg.init_from or _exists(cfg.init_from.removeprefix("local-dir:")),
         "must be '' or an existing checkpoint, timm .safetensors export or open_clip export folder"),
        ("model.lock_image_unlocked_groups", cfg.model.lock_image_unlocked_groups >= 0, "must be >= 0"),
    ]
    for key, ok, msg in checks:
        if not ok:
            value = eval_key(cfg, key)
            raise ConfigError(f"{key}: {msg}, got {_show(value)}")
    known = [k for k, *_ in config_reference()] + ["world_size"]
    unknown = [k for k in cfg.resume_override if k not in known]
    if unknown:
        raise ConfigError(f"resume_override: unknown config key {_show(unknown[0])}"
                          f"{_did_you_mean(unknown[0], known)}")
    if get_method_class(cfg.method).needs_teacher and not cfg.model.teacher and not cfg.resume:
        raise ConfigError(f"model.teacher: method {cfg.method} needs a teacher (a CLIP-style run's checkpoint or export)")
    if cfg.model.teacher and not _exists(cfg.model.teacher.removeprefix("local-dir:")):
        raise ConfigError(f"model.teacher: not found: {_show(cfg.model.teacher)}")
    if cfg.data.unique_captions and cfg.data.source not in ("csv", "folder"):
        raise ConfigError(f"data.unique_captions: needs a csv or folder source (globally shuffled), got "
                          f"{cfg.data.source}; shards stream through a shuffle buffer: convert them with "
                          f"`rils data shards-to-csv PATTERN OUT.csv`, then data.source=csv data.path=OUT.csv")
    if cfg.logging.wandb and not cfg.logging.wandb_project.strip():
        raise ConfigError("logging.wandb_project: must name a W&B project, got ''")
    if cfg.logging.wandb:
        import importlib.util
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("logging.wandb: true needs the wandb package (pip install 'rils[wandb]')")
    if cfg.model.lock_image_unlocked_groups and not cfg.model.lock_image:
        raise ConfigError(f"model.lock_image_unlocked_groups: only means something with model.lock_image=true, "
                          f"got {cfg.model.lock_image_unlocked_groups} with model.lock_image=false")
    from ..presets import get_preset
    depth = get_preset(cfg.model.preset).depth
    if cfg.model.lock_image_unlocked_groups > depth:
        raise ConfigError(f"model.lock_image_unlocked_groups: {cfg.model.preset} has {depth} blocks, "
                          f"got {cfg.model.lock_image_unlocked_groups}")
    if cfg.model.lock_text and not METHODS[cfg.method].needs_text:
        raise ConfigError(f"model.lock_text: {cfg.method} has no text tower to lock")
    if cfg.data.source != "demo" and not cfg.data.path:
        raise ConfigError(f"data.path: required for data.source={cfg.data.source}")
    min_batch = METHODS[cfg.method].min_batch
    if cfg.train.batch_size < min_batch:
        raise ConfigError(f"train.batch_size: {cfg.method} contrasts samples within a batch and needs at least "
                          f"{min_batch} per rank, got {cfg.train.batch_size}")


def eval_key(cfg: Config, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def dump_config(cfg: Config, path: Path, header: str = "") -> None:
    """The resolved configuration as YAML (loadable with `-c`); `header` becomes a comment line."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _field_help(cls) -> dict[str, str]:
    """The trailing `# comment` of each field in the dataclass's source: the one place a key's
    meaning is written, shown by `rils pretrain --help`."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):\s*[^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def config_reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every config key, in declaration order."""
    rows = []

    def walk(obj, prefix):
        helps = _field_help(type(obj))
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                rows.append((prefix + f.name, getattr(hints[f.name], "__name__", str(hints[f.name])),
                             repr(value) if isinstance(value, str) else str(value), helps.get(f.name, "")))
    walk(Config(), "")
    return rows


def pretrain_epilog() -> str:
    """`rils pretrain --help`: the recipes and every config key, from the dataclasses."""
    rows = config_reference()
    width = max(len(k) for k, *_ in rows)
    lines = ["recipes: " + ", ".join(list_recipes()), "",
             "config keys (key=value on the command line; YAML values):"]
    for key, typ, default, meaning in rows:
        lines.append(f"  {key:{width}s}  {typ:5s} {default:10s} {meaning}")
    return "\n".join(lines)
