"""A checkpoint of every pre-training method goes through both dense protocols: the trunk of a CLIP,
MAE, MAE+CLIP, SLIP, RILS or RILS-prototypes run (a real checkpoint of the engine) fine-tunes for
segmentation and detection on the shapes-dense testbed and yields metrics in range."""
import pytest

from rils.data.prepare.shapes_dense import prepare as prepare_shapes_dense
from rils.eval.models import load_for_eval
from rils.eval.runner import run_protocol
from rils.train.config import load_config
from rils.train.engine import train

METHODS = ("clip", "mae", "mae_clip", "slip", "rils", "rils_prototypes")
TINY_RUN = ["model.preset=vit_nano8_32", "train.precision=fp32", "data.workers=0", "data.num_samples=16",
            "train.batch_size=4", "train.max_steps=1", "train.warmup_steps=1", "train.lr_base_batch=4",
            "train.device=cpu", "loss.num_prototypes=16", "loss.ssl_mlp_dim=32", "loss.ssl_emb_dim=16",
            "logging.tensorboard=false"]
SEGMENT = dict(steps=1, batch_size=2, image_size=32, head_channels=8, warmup_steps=1)
DETECT = dict(steps=1, batch=2, size=32, fpn_channels=16, box_head_dim=32, rpn_batch=16, roi_batch=16,
              proposals=20)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes_dense")
    prepare_shapes_dense(out, image_size=32, train=6, val=3, seed=0)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fine_tunes_for_segmentation_and_detection(method, testbed, tmp_path):
    ckpt = train(load_config("demo", [*TINY_RUN, f"method={method}", f"output_dir={tmp_path / 'run'}"]))
    loaded = load_for_eval(str(ckpt), "cpu")
    common = dict(device="cpu", precision="fp32", extract={"num_workers": 0, "progress": False})
    seg = run_protocol(loaded, "segment", str(testbed / "ade"), **common, **SEGMENT)
    assert 0.0 <= seg["metrics"]["mIoU"] <= 1.0 and seg["steps"] == 1
    det = run_protocol(loaded, "detect", str(testbed / "coco"), **common, **DETECT)
    assert 0.0 <= det["metrics"]["bbox"]["AP"] <= 1.0 and 0.0 <= det["metrics"]["segm"]["AP"] <= 1.0
