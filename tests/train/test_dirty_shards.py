"""Shards with a truncated JPEG, a non-image payload and an empty caption: training goes on and
the skipped samples are counted in metrics.jsonl."""
import io
import json

import webdataset as wds

from rils.data.demo import DemoShapes

from .helpers import TINY, rils_cmd, run


def jpeg_bytes(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_shards(folder, n_good=48):
    ds = DemoShapes("train", num_samples=n_good, image_size=32)
    bad = {7: {"jpg": jpeg_bytes(ds[0]["image"])[:200], "txt": "a truncated jpeg"},
           19: {"jpg": b"this is not an image at all", "txt": "a text file named .jpg"},
           31: {"png": jpeg_bytes(ds[1]["image"]), "txt": ""}}            # empty caption
    i = 0
    for shard in range(2):
        with wds.TarWriter(str(folder / f"{shard:05d}.tar")) as sink:
            for j in range(n_good // 2):
                item = ds[i]
                sink.write({"__key__": f"{shard:05d}{j:04d}", "jpg": jpeg_bytes(item["image"]), "txt": item["caption"]})
                if i in bad:
                    sink.write({"__key__": f"{shard:05d}{j:04d}x", **bad[i]})
                i += 1
    return 3


def test_training_survives_and_counts_broken_samples(tmp_path):
    n_bad = write_shards(tmp_path)
    out = tmp_path / "run"
    proc = run(rils_cmd("pretrain", "-c", "demo", *TINY, "data.source=shards",
                        f"data.path={tmp_path}/{{00000..00001}}.tar", "data.shuffle_buffer=4",
                        "train.batch_size=4", "train.max_steps=13", f"output_dir={out}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 14))
    last = records[-1]
    assert last["skipped"] == n_bad, last       # 13 steps x 4 = 52 > 48 good: every broken one was met
    assert last["skipped_by_reason"] == {"bad_image": 2, "empty_caption": 1}
    assert all(r["loss"] == r["loss"] for r in records)   # finite, no NaN


def test_resampled_shards_train(tmp_path):
    write_shards(tmp_path, n_good=16)
    out = tmp_path / "run"
    proc = run(rils_cmd("pretrain", "-c", "demo", *TINY, "data.source=shards", "data.resampled=true",
                        f"data.path={tmp_path}/{{00000..00001}}.tar", "data.num_samples=16",
                        "train.batch_size=4", "train.max_steps=6", f"output_dir={out}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6
