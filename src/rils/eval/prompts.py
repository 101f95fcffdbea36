"""Class names and prompt templates for zero-shot classification.

The JSON files in `templates/` use CLIP_benchmark's layout (`{dataset: [names]}` and
`{dataset: [templates]}`, `{c}` marks the class name), so files from CLIP_benchmark can be dropped
in and ours can be read by it. Keys: ours (`fashion-mnist`, `demo-shapes` for task "shape",
`demo-shapes-color` for task "color", `default`: templates only, a subset of CLIP's ImageNet
templates used for path datasets) and every list CLIP_benchmark ships or reads from torchvision,
under CLIP_benchmark's keys (`imagenet1k` with CLIP's 80 templates, `imagenet1k-slip` with the 7
SLIP evaluates with, `cifar10`, `cifar100`, `stl10`, `food101`, `pets`, `flowers`, `dtd`,
`eurosat`, ...; templates/NOTICE.md says where each comes from).

An ImageFolder whose sub-folders are ImageNet-1k WordNet ids (`n01440764`, ...) is read as
ImageNet: its classes take `imagenet1k`'s names (`synset_classnames`).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent / "templates"
CLASSNAMES_FILE = TEMPLATES_DIR / "en_classnames.json"
TEMPLATES_FILE = TEMPLATES_DIR / "en_zeroshot_classification_templates.json"


@lru_cache(maxsize=None)
def _read(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _lookup(source: str | Path | list | None, key: str | None, shipped: Path, what: str) -> list[str]:
    """`source` is a list, a shipped key, or a JSON file (a list, or a dict indexed by `key`)."""
    if isinstance(source, (list, tuple)):
        return list(source)
    if isinstance(source, str) and ".json:" in source:    # FILE.json:KEY picks an entry of the file
        source, key = source.rsplit(":", 1)
    if source is not None and Path(source).suffix == ".json":
        if not Path(source).is_file():
            raise FileNotFoundError(f"{what} file not found: {source}")
        data = _read(str(Path(source).resolve()))
        if isinstance(data, list):
            return data
        if key is None and len(data) == 1:
            key = next(iter(data))
        if key not in data:
            which = f"no entry {key!r}" if key is not None else "several entries and none was chosen"
            raise ValueError(f"{what} file {source} has {which}; pick one with {source}:KEY, one of: "
                             f"{', '.join(data)}")
        return list(data[key])
    name = source if source is not None else key
    data = _read(str(shipped))
    if name not in data:
        raise ValueError(f"no shipped {what} for {name!r}; known: {', '.join(data)} "
                         f"(or pass a JSON file)")
    return list(data[name])


def get_classnames(source=None, key: str | None = None) -> list[str]:
    """Class names: a list, a key of the shipped JSON, or a JSON file (a list, or a dict: the entry
    `key`, or FILE.json:KEY, or its only entry)."""
    return _lookup(source, key, CLASSNAMES_FILE, "classnames")


def get_templates(source=None, key: str | None = None) -> list[str]:
    """Prompt templates: a list, a key of the shipped JSON, or a JSON file (a list, or a dict: the
    entry `key`, or FILE.json:KEY, or its only entry)."""
    return _lookup(source, key, TEMPLATES_FILE, "templates")


def has_shipped(kind: str, key: str | None) -> bool:
    return key in _read(str(CLASSNAMES_FILE if kind == "classnames" else TEMPLATES_FILE))


def fill(template: str, classname: str) -> str:
    # CLIP_benchmark formats with `{c}`; CLIP's notebook and rils.data.demo use `{}`. Accept both.
    return template.format(c=classname) if "{c}" in template else template.format(classname)


_SYNSET = re.compile(r"n\d{8}")


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """ImageNet-1k's WordNet ids in class-index order, the order of the `imagenet1k` names (timm
    ships the list)."""
    from timm.data import ImageNetInfo
    return tuple(ImageNetInfo("imagenet-1k").label_names())


def is_imagenet_synsets(folder_names: list[str]) -> bool:
    """True when every name is an ImageNet-1k WordNet id (the layout of ImageNet's train/val)."""
    return bool(folder_names) and all(_SYNSET.fullmatch(n) for n in folder_names) \
        and set(folder_names) <= set(imagenet_synsets())


def synset_classnames(synsets: list[str], imagenet_names: list[str]) -> list[str]:
    """The names of `synsets` (any subset of ImageNet-1k, in any order), picked from a 1,000-entry
    list in ImageNet's class order (`imagenet1k`, or a user's own list in that order)."""
    if len(imagenet_names) != 1000:
        raise ValueError(f"the class folders are ImageNet WordNet ids, which need a 1,000-entry class "
                         f"name list in ImageNet's order; got {len(imagenet_names)} names")
    index = {w: k for k, w in enumerate(imagenet_synsets())}
    return [imagenet_names[index[w]] for w in synsets]
