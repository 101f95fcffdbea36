"""`rils eval`: single protocols, the suite, checkpoints (open_clip folder and rils file), errors."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from eval_helpers import make_image_folder, make_open_clip, write_local_dir
from rils.eval import PROTOCOLS, REGISTRY, Protocol, fingerprint_file
from rils.eval.cli import main
from rils.eval.models import default_device
from rils.precision import resolve_precision

FAST = ["--num-workers", "0", "--quiet", "--demo-image-size", "32"]


@pytest.fixture
def local_dir(tmp_path):
    write_local_dir(tmp_path / "clip", make_open_clip(0))
    return tmp_path / "clip"


def test_zeroshot_cli_writes_json_and_reuses_cache(local_dir, tmp_path, capsys):
    out, cache = tmp_path / "zs.json", tmp_path / "cache"
    argv = ["eval", "zeroshot", "--checkpoint", f"local-dir:{local_dir}", "--dataset", "demo-shapes",
            "--task", "color", "--num-samples", "12", "--cache-dir", str(cache), "--out", str(out), *FAST]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["protocol"] == "zeroshot" and record["split"] == "val" and record["num_samples"] == 12
    assert record["model_id"] == fingerprint_file(local_dir)
    assert record["templates"][0] == "a {c} shape."
    assert set(record["metrics"]) == {"top1", "top5", "mean_per_class"}
    assert record["precision"] == resolve_precision("auto", default_device())[0] and "amp" not in record
    printed = capsys.readouterr().out
    assert "zeroshot on demo-shapes (val, task color)" in printed and "top-1" in printed
    assert len(list(cache.glob("*.pt"))) == 1

    assert main(argv) == 0  # unchanged weights: the cached features are used
    assert len(list(cache.glob("*.pt"))) == 1 and json.loads(out.read_text())["metrics"] == record["metrics"]

    write_local_dir(local_dir, make_open_clip(1))  # new bytes in the checkpoint folder
    assert main(argv) == 0
    assert len(list(cache.glob("*.pt"))) == 2
    assert json.loads(out.read_text())["model_id"] != record["model_id"]


def test_zeroshot_on_a_synset_named_folder_with_imagenet1k_names(local_dir, tmp_path):
    make_image_folder(tmp_path / "val", classes=("n01440764", "n01443537", "n01484850"), per_class=2)
    out = tmp_path / "zs.json"
    argv = ["eval", "zeroshot", "--checkpoint", f"local-dir:{local_dir}", "--dataset", str(tmp_path / "val"),
            "--out", str(out), *FAST]
    assert main(argv + ["--classnames", "imagenet1k", "--templates", "imagenet1k-slip"]) == 0
    record = json.loads(out.read_text())
    assert record["classnames"] == ["tench", "goldfish", "great white shark"] and len(record["templates"]) == 7
    assert record["num_samples"] == 6 and 0 <= record["metrics"]["top1"] <= 1
    assert main(argv) == 0    # no --classnames, no --templates: found from the folder
    record = json.loads(out.read_text())
    assert record["classnames"][0] == "tench" and len(record["templates"]) == 80


def test_suite_writes_markdown_and_json(local_dir, tmp_path, capsys):
    make_image_folder(tmp_path / "tree" / "train", per_class=4)
    make_image_folder(tmp_path / "tree" / "test", per_class=2, seed=1)
    tree = str(tmp_path / "tree")
    config = {
        "checkpoint": f"local-dir:{local_dir}",
        "num_workers": 0, "cache_dir": str(tmp_path / "cache"), "demo_image_size": 32,
        "evals": [
            {"protocol": "zeroshot", "dataset": "demo-shapes", "options": {"num_samples": 8}},
            {"protocol": "retrieval", "dataset": "demo-shapes",
             "options": {"num_samples": 6, "recall_k": [1, 5]}},
            {"protocol": "fewshot", "dataset": tree, "options": {"shots": [1, 2], "seeds": 2}},
            {"protocol": "linear", "dataset": tree, "options": {"epochs": 3, "warmup_epochs": 1}},
        ],
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "res" / "suite.json"
    assert main(["eval", "suite", "-c", str(tmp_path / "suite.yaml"), "--out", str(out), "--quiet"]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["protocol"] for r in results] == ["zeroshot", "retrieval", "fewshot", "linear"]
    assert set(results[1]["metrics"]) >= {"image_to_text_R@5", "text_to_image_R@1"}
    assert results[3]["feature"]["kind"] == "embed"  # open_clip: no forward_features
    md = (tmp_path / "res" / "suite.md").read_text()
    assert "| protocol | dataset | split | metric | value (%) |" in md
    assert "| fewshot |" in md and "| 2-shot | " in md and " ± " in md
    assert "| retrieval | demo-shapes | val | image_to_text_R@1 |" in md
    assert md.count("\n| ") == 1 + 3 + 5 + 2 + 2  # the header, then one row per metric
    assert "| linear |" in capsys.readouterr().out


def test_the_readme_suite_example_passes_the_suites_checks(tmp_path, monkeypatch):
    """The README's suite example (an entry for every kind of protocol, segment and detect too) is
    accepted as the README says: every entry reaches its protocol with its options, the top-level keys
    are every entry's defaults."""
    import re
    from pathlib import Path

    from rils.eval import cli

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme[readme.index("**`rils eval suite -c suite.yaml`**"):]
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", block, re.S).group(1))
    assert {e["protocol"] for e in config["evals"]} >= {"zeroshot", "linear", "segment", "detect"}
    for entry in config["evals"]:   # the example's data, made here (the suite checks that it exists)
        if entry["dataset"] not in ("fashion-mnist", "demo-shapes"):
            path = tmp_path / entry["dataset"].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("filepath,caption\n") if path.suffix == ".csv" else path.mkdir()
            entry["dataset"] = str(path)
    config.update(out=str(tmp_path / "results" / "rils.json"), markdown=str(tmp_path / "results" / "rils.md"))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(config))
    seen = []

    def run_one(ns, models):   # the checks only: no model, no data read
        seen.append(ns)
        return {"protocol": ns.eval_protocol, "dataset": ns.dataset, "split": ns.split, "checkpoint": ns.checkpoint,
                "model_id": "m", "metrics": {"m": 0.5}}

    monkeypatch.setattr(cli, "_run_one", run_one)
    assert main(["eval", "suite", "-c", str(tmp_path / "suite.yaml")]) == 0
    assert [ns.eval_protocol for ns in seen] == [e["protocol"] for e in config["evals"]]
    assert all(ns.device == "cuda" and ns.num_workers == 8 and ns.checkpoint == "runs/rils" for ns in seen)
    by = {ns.eval_protocol: ns for ns in seen}
    assert by["linear"].blrs == [0.01, 0.1, 1.0] and by["fewshot"].shots == [1, 5] and by["retrieval"].ks == [1, 5]
    assert by["patchseg"].task == "color" and by["segment"].resume is True and by["segment"].work_dir == "runs/rils/seg"
    assert by["detect"].train_fraction == 0.1 and by["detect"].epochs == 12 and by["detect"].seed == 1
    assert json.loads((tmp_path / "results" / "rils.json").read_text())["model_id"] == "m"


def test_suite_entry_errors_name_the_entry(local_dir, tmp_path, capsys):
    config = {"checkpoint": f"local-dir:{local_dir}",
              "evals": [{"protocol": "fewshot", "dataset": "demo-shapes", "options": {"shotz": [1]}}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    assert main(["eval", "suite", "-c", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert "evals[0] (fewshot)" in err and "--shotz" in err and err.count("\n") == 1


def test_cli_errors_are_one_line(local_dir, tmp_path, capsys):
    base = ["eval", "linear", "--checkpoint", f"local-dir:{local_dir}", *FAST]
    assert main([*base, "--dataset", str(tmp_path / "nope")]) == 2
    assert "neither a known name" in capsys.readouterr().err
    missing = tmp_path / "missing.pt"
    assert main(["eval", "zeroshot", "--checkpoint", str(missing), "--dataset", "demo-shapes"]) == 2
    assert capsys.readouterr().err.strip() == f"rils eval: error: checkpoint not found: {missing}"
    make_image_folder(tmp_path / "flat")  # one tree, no split folders: train would equal test
    assert main([*base, "--dataset", str(tmp_path / "flat")]) == 2
    assert "are the same data" in capsys.readouterr().err


def _rils_checkpoint(path):
    """A checkpoint as the trainer writes it (format, preset, method, the method's state_dict)."""
    import rils
    from rils.checkpoint import FORMAT, save_atomic

    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method="rils")
    save_atomic({"format": FORMAT, "preset": model.preset.to_dict(), "method": "rils",
                 "state_dict": rils.create_method("rils", model).state_dict()}, path)


def test_rils_checkpoint_through_the_rils_command(tmp_path):
    from rils.cli import main as rils_main

    ckpt = tmp_path / "latest.pt"
    _rils_checkpoint(ckpt)
    common = ["--checkpoint", str(ckpt), "--dataset", "demo-shapes", "--num-samples", "8",
              "--num-train-samples", "16", "--cache-dir", str(tmp_path / "c"), *FAST]
    for protocol, extra in [("zeroshot", []), ("linear", ["--epochs", "2", "--warmup-epochs", "1"]),
                            ("finetune", ["--epochs", "1", "--warmup-epochs", "0",
                                          "--train-batch-size", "8"])]:
        out = tmp_path / f"{protocol}.json"
        assert rils_main(["eval", protocol, *common, *extra, "--out", str(out)]) == 0, protocol
        record = json.loads(out.read_text())
        assert record["model_id"] == fingerprint_file(ckpt)
    assert json.loads((tmp_path / "linear.json").read_text())["feature"]["kind"] == "pooled"
    ft = json.loads((tmp_path / "finetune.json").read_text())
    assert ft["timm_model_name"] == "vit_tiny_patch16_224"
    assert ft["num_train"] == 16 and ft["num_classes"] == 6


def test_precision_option_and_the_deprecated_amp_flag(capsys):
    import argparse

    from rils.eval.cli import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"), help="evaluate")
    base = ["eval", "zeroshot", "--checkpoint", "x.pt", "--dataset", "demo-shapes"]
    assert parser.parse_args(base).precision == "auto"
    assert parser.parse_args([*base, "--precision", "fp32"]).precision == "fp32"
    assert parser.parse_args([*base, "--amp"]).precision == "bf16"          # the old flag: bf16 autocast
    assert "--precision bf16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--precision", "fp8"])
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--help"])
    shown = capsys.readouterr().out
    assert "--precision {auto,bf16,fp16,tf32,fp32}" in shown and "--amp" not in shown   # the old flag is hidden


def test_registry_names_and_records():
    assert PROTOCOLS == ("zeroshot", "retrieval", "linear", "fewshot", "finetune", "patchseg", "segment", "detect")
    assert tuple(REGISTRY) == PROTOCOLS and all(REGISTRY[n].name == n for n in PROTOCOLS)
    assert {n for n in PROTOCOLS if REGISTRY[n].needs_text} == {"zeroshot", "retrieval", "patchseg"}
    assert {n for n in PROTOCOLS if REGISTRY[n].needs_train} == {"linear", "fewshot", "finetune", "segment", "detect"}
    assert {n for n in PROTOCOLS if not REGISTRY[n].uses_feature_cache} == {"finetune", "patchseg", "segment",
                                                                             "detect"}
    assert {n for n in PROTOCOLS if REGISTRY[n].load_split is not None} == {"segment", "detect"}


def test_a_new_protocol_is_one_record(local_dir, tmp_path, monkeypatch):
    seen = {}

    def run(loaded, test, train, *, device, precision, extract, scale):
        seen.update(precision=precision, extract=extract, train=train)
        return {"metrics": {"scaled_count": scale * len(test)}}

    toy = Protocol(name="toy", help="count the images", run=run, uses_feature_cache=False,
                   add_arguments=lambda g: g.add_argument("--scale", type=float, default=1.0))
    monkeypatch.setitem(REGISTRY, "toy", toy)
    out = tmp_path / "toy.json"
    assert main(["eval", "toy", "--checkpoint", f"local-dir:{local_dir}", "--dataset", "demo-shapes",
                 "--num-samples", "5", "--scale", "0.5", "--precision", "fp32", "--out", str(out), *FAST]) == 0
    record = json.loads(out.read_text())
    assert record["protocol"] == "toy" and record["metrics"] == {"scaled_count": 2.5}
    assert record["settings"] == {"scale": 0.5} and record["precision"] == "fp32"
    assert seen["train"] is None and seen["precision"] == "fp32"
    assert "use_cache" not in seen["extract"] and seen["extract"]["batch_size"] == 64
