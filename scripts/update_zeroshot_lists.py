"""Rebuild the shipped zero-shot class names and templates (src/rils/eval/templates/) from their
sources, so their provenance can be checked and they can be refreshed:

  pip download clip_benchmark==1.6.2 --no-deps -d /tmp/cb && unzip -q /tmp/cb/*.whl -d /tmp/cb/x
  git clone https://github.com/facebookresearch/SLIP /tmp/slip
  python scripts/update_zeroshot_lists.py /tmp/cb/x/clip_benchmark/datasets /tmp/slip

- Every entry of CLIP_benchmark's en_classnames.json and en_zeroshot_classification_templates.json
  (MIT, (c) 2022 Mehdi Cherti), under CLIP_benchmark's keys, so a key means the same in both tools.
- Class names CLIP_benchmark takes from torchvision at run time (it has no list for them) come
  from SLIP's labels.json (MIT, (c) Meta Platforms), which holds CLIP's lists (openai/CLIP
  data/prompts.md, MIT), under CLIP_benchmark's key names.
- `imagenet1k-slip`: the 7 ImageNet templates SLIP evaluates with (the paper's zero-shot recipe
  "strictly follows" SLIP); `imagenet1k` holds CLIP's 80.
Our own entries (fashion-mnist, demo-shapes, demo-shapes-color, default) are kept as they are.
"""
import json
import subprocess
import sys
from pathlib import Path

OURS = Path(__file__).resolve().parents[1] / "src/rils/eval/templates"
# SLIP's key -> CLIP_benchmark's key, for the class-name lists CLIP_benchmark lacks.
FROM_SLIP = {"food101": "food101", "cifar10": "cifar10", "cifar100": "cifar100", "stl10": "stl10",
             "dtd": "dtd", "voc2007": "voc2007", "aircraft": "fgvc_aircraft", "cars": "cars",
             "sun397": "sun397", "resisc45": "resisc45", "rendered_sst2": "renderedsst2"}


def _slip(repo: Path, name: str) -> dict:
    if (repo / name).is_file():
        return json.loads((repo / name).read_text())
    return json.loads(subprocess.check_output(["git", "-C", str(repo), "show", f"HEAD:{name}"]))


def main(cb_dir: str, slip_repo: str) -> None:
    cb_dir, slip_repo = Path(cb_dir), Path(slip_repo)
    cb_names = json.loads((cb_dir / "en_classnames.json").read_text())
    cb_templates = json.loads((cb_dir / "en_zeroshot_classification_templates.json").read_text())
    slip_labels, slip_templates = _slip(slip_repo, "labels.json"), _slip(slip_repo, "templates.json")

    names_file, templates_file = OURS / "en_classnames.json", OURS / "en_zeroshot_classification_templates.json"
    names, templates = json.loads(names_file.read_text()), json.loads(templates_file.read_text())
    own = ("fashion-mnist", "demo-shapes", "demo-shapes-color", "default")
    names = {k: v for k, v in names.items() if k in own}
    templates = {k: v for k, v in templates.items() if k in own}
    names.update(cb_names)
    for slip_key, key in FROM_SLIP.items():
        names.setdefault(key, slip_labels[slip_key])
    templates.update({k: v for k, v in cb_templates.items() if k != "dummy"})
    templates["imagenet1k-slip"] = [t.replace("{}", "{c}") for t in slip_templates["imagenet"]]
    for path, data in ((names_file, names), (templates_file, templates)):
        # One entry per line, as the files were: small diffs, easy to read.
        lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in data.items()]
        path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{len(names)} class-name lists, {len(templates)} template lists written to {OURS}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: update_zeroshot_lists.py CLIP_BENCHMARK_DATASETS_DIR SLIP_REPO")
    main(*sys.argv[1:])
