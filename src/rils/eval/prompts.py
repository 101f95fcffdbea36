"""Class names and prompt templates for zero-shot classification.

The JSON files in `templates/` use CLIP_benchmark's layout (`{dataset: [names]}` and
`{dataset: [templates]}`, `{c}` marks the class name), so files from CLIP_benchmark can be dropped
in and ours can be read by it. Keys: `fashion-mnist`, `demo-shapes` (task "shape"),
`demo-shapes-color` (task "color") and `default` (templates only: a subset of CLIP's ImageNet
templates, used for path datasets).
"""
from __future__ import annotations

import json
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
