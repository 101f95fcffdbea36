"""Whatever the recipe and the key=value overrides, the config parser either returns a
Config or raises ConfigError with a one-line message; the `rils pretrain` command turns every invalid
input into exit status 2 and one line on stderr, never a traceback."""
import contextlib
import dataclasses
import io
import typing

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rils.cli import main
from rils.train import config as C
from rils.train.config import Config, ConfigError, load_config


def known_keys(cls=Config, prefix=""):
    keys = []
    for name, typ in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(typ):
            keys.append(prefix + name)
            keys += known_keys(typ, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


KEYS = known_keys()


def key_type(key):
    obj = Config
    for part in key.split("."):
        obj = typing.get_type_hints(obj)[part]
    return obj


CHOICES = {"method": ["rils", "clip", "mae", "slip", "simclr", "mae_clip", "rils_prototypes"],
           "model.preset": ["vit_nano8_32", "vit_ti8_64", "vit_b16"], "data.source": ["demo", "shards", "csv", "folder"],
           "train.precision": ["bf16", "fp32"], "train.device": ["auto", "cpu", "cuda"], "resume": ["", "latest"]}


def typed_value(key):
    """A value of the key's type, mostly inside its valid range."""
    typ = key_type(key)
    if key in CHOICES:
        return st.sampled_from(CHOICES[key])
    if typ is bool:
        return st.sampled_from(["true", "false"])
    if typ is int:
        return st.integers(0, 64).map(str)
    if typ is float:
        return st.floats(0.01, 0.99).map(repr)
    if typ is str:
        return st.text(alphabet="abcdefghij/_.", min_size=1, max_size=12)
    return st.just("{}")
SPECIAL_VALUES = ["", "null", "~", "true", "no", "0", "-1", "1e-3", "1e400", ".inf", "-.inf", ".nan", "0x10",
                  "9" * 5000, "[1, 2]", "{a: 1}", "{preset: vit_b16}", "[" * 2000, "{" * 2000, "'", '"', "!!binary AA==",
                  "!!python/object/apply:os.system ['true']", "&a [*a]", "2020-01-01", "a: b: c", "\x00", "é\u2028x",
                  "rils", "clip", "vit_nano8_32", "latest", "shards", "/nonexistent/x.pt", "x\ny"]

values = st.one_of(st.sampled_from(SPECIAL_VALUES), st.text(max_size=40),
                   st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(str))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=20),
                 st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(KEYS), st.text(max_size=10)))
typed_item = st.sampled_from(KEYS).flatmap(lambda k: typed_value(k).map(lambda v: f"{k}={v}"))
random_item = st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, values), st.text(max_size=30))
# about half of the items are well-typed, so that a fair share of the examples is valid as a whole
overrides = st.lists(st.integers(0, 9).flatmap(lambda n: typed_item if n < 6 else random_item), max_size=4)
recipes = st.integers(0, 9).flatmap(lambda n: st.sampled_from(["demo", "rils", "clip", "mae"]) if n < 6 else st.one_of(
    st.sampled_from(["nope", "x.yaml", "/", ".", "a\x00b", "x" * 5000]), st.text(max_size=20)))


def one_line(message: str) -> bool:
    return len(message.splitlines()) == 1 and message.strip() == message and "Traceback" not in message


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(recipe=recipes, items=overrides)
@example(recipe="demo", items=["train.lr=" + "[" * 5000])          # YAML nesting deeper than Python recursion
@example(recipe="demo", items=["train.epochs=" + "9" * 5000])      # an int Python will not parse
@example(recipe="demo", items=["train.lr=[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
                               "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
                               "[*d,*d,*d,*d,*d,*d,*d,*d,*d]]"])     # an alias bomb: not printed in full
@example(recipe="demo", items=["resume=a\x00b"])
@example(recipe="demo", items=["resume=" + "x" * 5000])           # a name too long for the OS
@example(recipe="demo", items=["train.lr=.inf"])
@example(recipe="a\x00b.yaml", items=[])
@example(recipe="demo", items=["method=x\ny"])
@example(recipe="demo", items=["x\u2028y=1"])
def test_load_config_returns_a_config_or_a_one_line_config_error(recipe, items):
    try:
        cfg = load_config(recipe, items)
    except ConfigError as exc:
        event("ConfigError")
        assert one_line(str(exc)) and len(str(exc)) < 2000, str(exc)[:500]
        return
    event("valid")
    assert isinstance(cfg, Config)
    C.validate(cfg)


def test_valid_overrides_take_effect():
    cfg = load_config("demo", ["train.max_bad_steps=3", "train.lr=2e-4", "data.path=/d/{0..9}.tar", "data.source=shards"])
    assert (cfg.train.max_bad_steps, cfg.train.lr, cfg.data.source) == (3, 2e-4, "shards")
    for bad in (["train.max_bad_steps=0"], ["train.lr=.inf"], ["loss.tau_pred=.nan"]):
        with pytest.raises(ConfigError):
            load_config("demo", bad)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=recipes.filter(lambda r: not r.startswith("-")),
       items=overrides.map(lambda xs: [x for x in xs if not x.startswith("-")]))
@example(recipe="demo", items=["train.batch_size=abc"])
@example(recipe="demo", items=["a\x00=1"])
@example(recipe="demo", items=["method=x\ny"])
def test_the_command_exits_0_or_2_with_one_line(monkeypatch, recipe, items):
    """Options-like arguments (leading '-') are argparse's business and are left out."""
    started = []
    monkeypatch.setattr("rils.train.engine.train", lambda cfg: started.append(cfg))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["pretrain", "-c", recipe, *items])
    event(f"exit {code}")
    if code == 0:
        assert len(started) == 1 and isinstance(started[0], Config)
    else:
        assert code == 2 and not started
        assert one_line(err.getvalue().rstrip("\n")) and err.getvalue().startswith("rils: error: "), err.getvalue()


def test_data_that_cannot_be_opened_is_a_config_error(tmp_path, capsys):
    """Problems only found when the data is opened (no shards, a missing CSV column, too few samples
    for one step) end the same way: exit 2, one line."""
    (tmp_path / "pairs.csv").write_text("path,text\na.jpg,x\n")
    cases = [["data.source=shards", f"data.path={tmp_path}/{{0..3}}.tar"],
             ["data.source=csv", f"data.path={tmp_path / 'pairs.csv'}"],
             ["data.source=folder", f"data.path={tmp_path / 'missing'}"],
             ["data.num_samples=10", "train.batch_size=64"]]
    for extra in cases:
        code = main(["pretrain", "-c", "demo", "model.preset=vit_nano8_32", f"output_dir={tmp_path / 'run'}", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("rils: error: data"), (extra, err)
