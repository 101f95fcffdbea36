"""A file that is not an image, in an evaluation ImageFolder, is left out and counted in the
JSON of `rils eval`; one whose data is truncated stops the evaluation with one line; `rils viz
semantic-map` on a file that is not an image exits 2 with one line."""
import json

import pytest
from PIL import Image

from rils.cli import main
from rils.train.config import load_config
from rils.train.engine import train

from .helpers import TINY

FAST = ["--num-workers", "1", "--quiet", "--no-cache"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return train(load_config("demo", [*TINY, "train.max_steps=1", f"output_dir={out}"]))


def image_folder(root):
    for c, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), colour).save(root / c / f"{i}.png")
    (root / "red" / "notanimage.jpg").write_text("<html>404 Not Found</html>")
    return root


def error_lines(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return [line for line in err if not line.startswith("[rils]")]


def test_an_unreadable_file_in_an_image_folder_is_skipped_and_counted(ckpt, tmp_path, capsys):
    folder, out = image_folder(tmp_path / "tree"), tmp_path / "zs.json"
    assert main(["eval", "zeroshot", "--checkpoint", str(ckpt), "--dataset", str(folder), "--out", str(out),
                 *FAST]) == 0
    record = json.loads(out.read_text())
    assert record["skipped"] == {"unreadable_image": 1} and record["num_samples"] == 4


def test_a_truncated_image_stops_the_evaluation_with_one_line(ckpt, tmp_path, capsys):
    folder = image_folder(tmp_path / "tree")
    png = (folder / "blue" / "0.png").read_bytes()
    (folder / "blue" / "0.png").write_bytes(png[:len(png) // 2])      # the header reads, the data does not
    code = main(["eval", "zeroshot", "--checkpoint", str(ckpt), "--dataset", str(folder), *FAST])
    errors = error_lines(capsys)
    assert code == 2 and len(errors) == 1 and "blue/0.png" in errors[0] and "cannot be decoded" in errors[0], errors


def test_viz_on_a_file_that_is_not_an_image_exits_2_with_one_line(ckpt, tmp_path, capsys):
    notes = tmp_path / "notanimage.txt"
    notes.write_text("not an image")
    code = main(["viz", "semantic-map", "--checkpoint", str(ckpt), "--image", str(notes), "--texts", "a", "b",
                 "--out", str(tmp_path / "m.png")])
    assert code == 2 and error_lines(capsys) == [f"rils viz: error: {notes} is not a readable image (UnidentifiedImageError)"]
