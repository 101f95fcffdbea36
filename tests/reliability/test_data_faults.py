"""Data that yields nothing is bad input said in one line with the reasons (exit 2); a missing
file is `missing_file`, counted once; the console shows the skip counts when they change; a long run of
unreadable samples mid-run stops with one line (exit 1), not a loader worker's traceback."""
import sys

from PIL import Image

from rils.cli import main
from rils.train.config import load_config
from rils.train.engine import train

from .helpers import TINY, records, run

FOLDER_OR_CSV = [*TINY, "train.batch_size=4", "data.num_samples=0"]


def images(folder, n, captions=True):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(folder / f"{i:03d}.png")
        if captions:
            (folder / f"{i:03d}.txt").write_text(f"a red square number {i}")
    return folder


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if not line.startswith("[rils]")]
    assert len(errors) == 1, err
    return errors[0]


def test_data_that_yields_nothing_is_bad_input_with_the_reasons(tmp_path, capsys):
    folder = images(tmp_path / "img", 20, captions=False)
    code = main(["pretrain", "-c", "demo", *FOLDER_OR_CSV, "data.source=folder", f"data.path={folder}",
                 f"output_dir={tmp_path / 'a'}"])
    assert code == 2 and one_error_line(capsys) == "rils: error: data: 0 of 20 samples readable: 20 missing caption (.txt)"
    csv = tmp_path / "pairs.csv"
    csv.write_text("filepath,caption\n" + "".join(f"gone/{i}.jpg,a thing\n" for i in range(20)))
    code = main(["pretrain", "-c", "demo", *FOLDER_OR_CSV, "data.source=csv", f"data.path={csv}",
                 f"output_dir={tmp_path / 'b'}"])
    assert code == 2 and one_error_line(capsys) == "rils: error: data: 0 of 20 samples readable: 20 missing file"


def test_a_missing_file_is_counted_once_and_the_console_shows_the_counts(tmp_path, capsys):
    images(tmp_path / "img", 16)
    rows = [f"img/{i:03d}.png,a red square\n" for i in range(16)] + [f"gone/{i}.png,a thing\n" for i in range(4)]
    (tmp_path / "pairs.csv").write_text("filepath,caption\n" + "".join(rows))
    train(load_config("demo", [*FOLDER_OR_CSV, "data.source=csv", f"data.path={tmp_path / 'pairs.csv'}",
                               "train.max_steps=5", f"output_dir={tmp_path / 'run'}"]))   # 5 steps x 4 = one epoch
    last = records(tmp_path / "run")[-1]
    assert last["step"] == 5 and last["epoch_skipped_by_reason"] == {"missing_file": 4}
    assert last["epoch_samples"] + last["epoch_skipped"] == 24     # 20 slots + the 4 that were skipped
    shown = [line for line in capsys.readouterr().err.splitlines() if "unreadable samples so far" in line]
    assert shown and shown[-1].endswith("skipped 4 unreadable samples so far: missing_file 4")
    assert len(shown) == len({line.split(": ", 1)[1] for line in shown})   # printed only when the counts change


def test_a_long_run_of_unreadable_samples_mid_run_stops_with_one_line(tmp_path):
    images(tmp_path / "img", 1)
    rows = ["img/000.png,a red square\n"] + [f"gone/{i}.png,a thing\n" for i in range(1, 1100)]
    (tmp_path / "pairs.csv").write_text("filepath,caption\n" + "".join(rows))
    proc = run([sys.executable, "-m", "rils", "pretrain", "-c", "demo", *FOLDER_OR_CSV, "data.workers=1",
                "data.source=csv", f"data.path={tmp_path / 'pairs.csv'}", "train.max_steps=30",
                f"output_dir={tmp_path / 'run'}"], timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert last.startswith("rils: error: data: 1000 samples in a row from index ") and \
        last.endswith("are unreadable (1000 missing file); is data.path right?"), last
