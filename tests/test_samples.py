"""rils.data.samples.SampleMaker: a sample depends on its seed only, and making it touches no
global random state (nor queues seeds for devices, which cost a third of a demo sample's time)."""
import torch
from PIL import Image

from rils.data.samples import SampleMaker
from rils.data.transforms import train_transform
from rils.model.text import get_tokenizer


def _maker():
    return SampleMaker(train_transform(32), get_tokenizer(16))


def _image():
    g = torch.Generator().manual_seed(1)
    return Image.fromarray((torch.rand(48, 40, 3, generator=g) * 255).to(torch.uint8).numpy())


def test_a_sample_depends_on_its_seed_only_and_leaves_the_global_generator_alone():
    maker, image = _maker(), _image()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = maker(image, "a red square", 7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(1000)                                   # move the global generator on
    b = maker(image, "a red square", 7)
    c = maker(image, "a red square", 8)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["text"], b["text"])
    assert not torch.equal(a["image"], c["image"])


def test_making_a_sample_seeds_the_cpu_generator_only(monkeypatch):
    def refuse(seed):
        raise AssertionError("torch.manual_seed also seeds (lazily) every device")
    monkeypatch.setattr(torch, "manual_seed", refuse)
    out = _maker()(_image(), "a blue circle", 3)
    assert out["image"].shape == (3, 32, 32)
