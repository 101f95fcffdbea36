"""The floor plan of docs/ARCHITECTURE.md holds: no module imports the package root, no lower layer
imports a higher one, autocast and "auto" device resolution live in one place each, and the
checklist "add a method" works as written."""
import ast
import re
from pathlib import Path

import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "rils"

# Layers from the top (may import anything below) to the bottom (imports nothing of ours above).
LAYERS = [
    {"cli", "__main__", "demo"},
    {"train", "eval", "export", "viz", "bench"},
    {"load"},
    {"checkpoint", "factory", "data", "formats"},
    {"methods"},
    {"model", "losses"},
    {"presets", "distributed", "precision", "_version"},
]


def _layer(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module rils.{top} is in no layer of tests/test_architecture.py")


def _imports(path: Path):
    """(line, imported top-level rils module or '' for the root) for every import of ours."""
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        pkg = path.relative_to(SRC.parent).parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "rils" or a.name.startswith("rils."):
                    yield node.lineno, (a.name.split(".") + [""])[1]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and (node.module == "rils" or node.module.startswith("rils.")):
                    parts = node.module.split(".")
                    yield node.lineno, parts[1] if len(parts) > 1 else ""
                continue
            base = list(pkg[:len(pkg) - node.level + 1])
            target = base + (node.module.split(".") if node.module else [])
            if len(target) == 1:   # `from . import x` at the package root, or `from .. import x`
                for a in node.names:
                    yield node.lineno, a.name if (SRC / a.name).exists() or (SRC / f"{a.name}.py").exists() else ""
            else:
                yield node.lineno, target[1]


def test_no_module_imports_the_package_root_or_a_higher_layer():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel == Path("__init__.py"):
            continue   # the root only re-exports
        top = rel.parts[0].removesuffix(".py")
        for line, target in _imports(path):
            if target == "":
                bad.append(f"{rel}:{line} imports the package root")
            elif target != top and _layer(target) < _layer(top):
                bad.append(f"{rel}:{line} ({top}) imports the higher layer {target}")
    assert not bad, "\n".join(bad)


def test_autocast_and_auto_device_each_live_in_one_place():
    autocast = [p.relative_to(SRC) for p in SRC.rglob("*.py") if "torch.autocast(" in p.read_text()]
    assert autocast == [Path("precision.py")]
    auto_device = [p.relative_to(SRC) for p in SRC.rglob("*.py")
                   if re.search(r'"auto".{0,40}torch\.cuda\.is_available|"cuda" if torch\.cuda\.is_available', p.read_text())]
    assert auto_device == [Path("precision.py")]


def test_adding_a_method_by_the_checklist(tmp_path, monkeypatch):
    """docs/ARCHITECTURE.md, "Add a method": a subclass in its own module, registered through the
    public registry, trains two steps with the real engine."""
    module = tmp_path / "toy_method.py"
    module.write_text('''
import rils
from rils import losses as L


@rils.register_method
class ToyCLIP(rils.PretrainMethod):
    """CLIP with its contrastive loss halved: the smallest method that is not one of ours."""
    name = "toy_clip"
    needs_text = True
    decoder_kind = None
    min_batch = 2

    def forward(self, batch):
        loss, matched, _ = self.contrastive(self.model.encode_image(batch["image"]),
                                            self.model.encode_text(batch["text"]))
        return {"loss": 0.5 * loss, "clip_loss": loss.detach(), "i2t_acc": matched.float().mean()}
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_method  # noqa: F401  (registers the method)
    from rils.methods import METHODS
    from rils.train.config import load_config
    from rils.train.engine import train
    try:
        cfg = load_config("demo", ["method=toy_clip", "model.preset=vit_nano8_32", "train.precision=fp32",
                                   "data.workers=0", "data.num_samples=64", "train.batch_size=8",
                                   "train.max_steps=2", f"output_dir={tmp_path / 'run'}"])
        ckpt = torch.load(train(cfg), weights_only=True)
    finally:
        METHODS.pop("toy_clip", None)
    assert ckpt["method"] == "toy_clip" and ckpt["step"] == 2
    assert not any(k.startswith("model.decoder.") for k in ckpt["state_dict"])
    assert any(k.startswith("model.text.") for k in ckpt["state_dict"])


BENCH = SRC.parents[1] / "benchmarks"


def test_benchmarks_keep_their_floor_plan():
    """Every script under benchmarks/ lives in perf/ or in a study folder (the shared scorer
    studies/shapes_eval.py aside); every study folder has a README whose second line names the
    document that holds its section, and each section it quotes exists there."""
    loose = [p.name for p in BENCH.iterdir() if p.is_file()]
    assert loose == [], f"scripts loose at benchmarks/: {loose}"
    assert {p.name for p in BENCH.iterdir()} == {"perf", "studies"}
    assert [p.name for p in (BENCH / "studies").iterdir() if p.is_file()] == ["shapes_eval.py"]
    for folder in [BENCH / "perf"] + sorted(p for p in (BENCH / "studies").iterdir() if p.is_dir()):
        readme = folder / "README.md"
        assert readme.is_file(), f"{folder.relative_to(BENCH)} has no README.md"
        lines = readme.read_text().splitlines()
        assert len(lines) == 3, f"{readme.relative_to(BENCH)}: three lines, not {len(lines)}"
        docs = sorted(set(re.findall(r"(docs/\w+\.md|README)", lines[1])))
        assert docs, f"{readme.relative_to(BENCH)} names no document it produces"
        text = "\n".join((SRC.parents[1] / (d if d != "README" else "README.md")).read_text() for d in docs)
        for section in re.findall(r'"([^"]+)"', lines[1]):
            assert re.search(rf"^#+ .*{re.escape(section)}", text, re.M), \
                f"{readme.relative_to(BENCH)}: no section {section!r} in {', '.join(docs)}"


def test_the_package_never_imports_a_script():
    """No module of the package imports from benchmarks/, loads a file from it or puts it on sys.path:
    the scripts depend on the package, never the other way."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(SRC)}:{node.lineno} imports {m}" for m in mods if m.split(".")[0] == "benchmarks"]
        bad += [f"{path.relative_to(SRC)}: {m.group(0)}" for m in
                re.finditer(r"(sys\.path\.\w+|spec_from_file_location|run_path|import_module)\([^)]*benchmarks[^)]*\)", text)]
    assert bad == [], bad
