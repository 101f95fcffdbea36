"""The feature cache: reused while the checkpoint is unchanged, recomputed when its bytes change."""
from __future__ import annotations

import torch

from eval_helpers import make_image_folder
from rils.eval import fingerprint_file, fingerprint_model, image_features, load_dataset


def _count_files(d):
    return len(list(d.glob("*.pt"))) if d.exists() else 0


def test_cache_keyed_on_checkpoint_bytes(tmp_path, rils_like, transform):
    data = load_dataset(str(make_image_folder(tmp_path / "data", per_class=3)))
    ckpt, cache = tmp_path / "model.pt", tmp_path / "cache"
    torch.save(rils_like.state_dict(), ckpt)
    opts = dict(cache_dir=cache, progress=False, batch_size=4)

    def features(kind="pooled"):
        return image_features(rils_like, data, transform, kind=kind, model_id=fingerprint_file(ckpt), **opts)

    first, kind = features()
    assert kind == "pooled" and first.shape == (6, 32) and rils_like.calls == 2 and _count_files(cache) == 1
    # Same checkpoint bytes: read back from disk, the model is not run again.
    again, _ = features()
    assert rils_like.calls == 2 and torch.equal(first, again)

    # New weights written to the same path: a new key, features recomputed.
    with torch.no_grad():
        rils_like.visual.trunk.norm.weight.mul_(2.0)
    torch.save(rils_like.state_dict(), ckpt)
    changed, _ = features()
    assert rils_like.calls == 4 and _count_files(cache) == 2
    assert torch.allclose(changed, 2 * first, atol=1e-5)  # the final norm's scale doubled

    # The feature kind is part of the key too.
    features(kind="embed")
    assert rils_like.calls == 6 and _count_files(cache) == 3


def test_in_memory_model_hashes_its_state_dict(tmp_path, rils_like, transform, monkeypatch):
    data = load_dataset(str(make_image_folder(tmp_path / "data", per_class=2)))
    monkeypatch.setenv("RILS_CACHE", str(tmp_path / "root"))  # default dir: $RILS_CACHE/features
    before = fingerprint_model(rils_like)
    image_features(rils_like, data, transform, progress=False)
    image_features(rils_like, data, transform, progress=False)
    assert rils_like.calls == 1 and _count_files(tmp_path / "root" / "features") == 1
    with torch.no_grad():
        rils_like.proj.weight.add_(1.0)
    assert fingerprint_model(rils_like) != before
    image_features(rils_like, data, transform, progress=False)
    assert rils_like.calls == 2 and _count_files(tmp_path / "root" / "features") == 2


def test_no_cache_writes_nothing(tmp_path, rils_like, transform):
    data = load_dataset(str(make_image_folder(tmp_path / "data", per_class=1)))
    image_features(rils_like, data, transform, use_cache=False, cache_dir=tmp_path / "c", progress=False)
    image_features(rils_like, data, transform, use_cache=False, cache_dir=tmp_path / "c", progress=False)
    assert rils_like.calls == 2 and _count_files(tmp_path / "c") == 0


def test_fingerprint_file_is_sha256_of_bytes(tmp_path):
    import hashlib

    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    assert fingerprint_file(f) == hashlib.sha256(b"abc").hexdigest()
    f.write_bytes(b"abd")
    assert fingerprint_file(f) == hashlib.sha256(b"abd").hexdigest()
