"""The `rils` command as a new user meets it: a quick --help of every command and presets (torch not
imported), a pretrain --help that lists the recipes and every config key, recipe names that win over
folders."""
import subprocess
import sys

import pytest

from rils.cli import main


def _imports_torch(*args) -> bool:
    code = ("import sys; from rils.cli import main\n"
            "try:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)") % (list(args),)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("args", [["--help"], ["presets"]])
def test_help_and_presets_do_not_import_torch(args):
    assert not _imports_torch(*args)


def _subcommands(parser, prefix=()):
    """Every command path of an argparse parser (("eval", "zeroshot"), ("data", "prepare"), ...)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommands(sub, (*prefix, name))


def _every_command():
    from rils.cli import COMMANDS, build_parser

    paths = set()
    for command in COMMANDS:   # build_parser gives only the named command its arguments and sub-commands
        paths |= {p for p in _subcommands(build_parser(command)) if p[0] == command}
    return sorted(paths)


HEAVY = ("torch", "torchvision", "timm", "open_clip")


def test_every_help_imports_no_torch():
    """Every command and sub-command (each protocol, segment and detect included, `rils data
    shards-to-csv`, `rils viz curves`, ...) prints its help and exits 0 from `python -m rils ... --help`
    without importing torch, torchvision, timm or open_clip, so help takes hundredths of a second, not
    the seconds those imports cost."""
    paths = _every_command()
    assert {("pretrain",), ("eval", "zeroshot"), ("eval", "segment"), ("eval", "detect"), ("eval", "suite"),
            ("export",), ("viz", "semantic-map"), ("data", "shards-to-csv"), ("bench",)} <= set(paths)
    heavy = {}
    for path in paths:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rils", *path, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage: rils" in proc.stdout, (path, proc.stderr[-2000:])
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        found = sorted(m for m in imported if m.split(".")[0] in HEAVY)
        if found:
            heavy[" ".join(path)] = found[:3]
    assert not heavy, f"--help imports heavy modules: {heavy}"


def test_presets_show_the_real_geometry(capsys):
    assert main(["presets"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("vit_ti8_64"))
    assert "64px" in line and " 8 " in line and "with this geometry" in line


def test_pretrain_help_lists_recipes_and_config_keys(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "recipes: " in out and "paper_b16" in out and "demo" in out
    for key in ("train.precision", "loss.tau_target", "data.demo_colorless_captions"):
        assert key in out
    assert "auto | bf16 | fp16 | tf32 | fp32" in out


def test_a_recipe_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    from rils.train.config import load_config

    (tmp_path / "demo").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("demo").data.source == "demo"


def test_bench_with_an_unknown_preset_is_one_line(capsys):
    assert main(["bench", "--preset", "vit_foo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'vit_foo'" in err[0]


def test_a_suite_with_a_bad_entry_fails_before_running_any(tmp_path, capsys):
    import yaml

    suite = {"checkpoint": "nope.pt", "evals": [
        {"protocol": "zeroshot", "dataset": "demo-shapes"},
        {"protocol": "zeroshot", "dataset": "no-such-dataset"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    assert main(["eval", "suite", "-c", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert "evals[1]" in err and "no-such-dataset" in err and "nope.pt" not in err
