"""Why the demo's semantic map gives every patch one label: read the per-patch distribution of Eq. 8
out of the tokens after each block (through the final norm and θ), on held-out demo images, and
report the colour patch-segmentation mIoU, the background IoU, and how close each patch's
embedding is to its image's mean embedding (1.0: every patch says what the whole image says).
Usage: patch_locality.py CKPT OUT.json [--images 300]"""
import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from rils.eval import load_for_eval
from rils.eval.datasets import DemoShapesDataset
from rils.eval.patchseg import (BACKGROUND_PROMPTS, COLOR_SEG_TEMPLATES, class_prompts, confusion_matrix,
                                segmentation_metrics, text_prototypes, upsample)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=300)
    args = ap.parse_args()
    loaded = load_for_eval(args.checkpoint)
    model, visual = loaded.model, loaded.model.visual
    data = DemoShapesDataset("val", task="color")
    pairs = [data.image_and_mask(i) for i in range(args.images)]
    images = torch.stack([loaded.transform(im) for im, _ in pairs])
    masks = np.stack([np.asarray(m, dtype=np.int64) for _, m in pairs])
    classes = data.seg_classnames
    rows = []
    with torch.inference_mode():
        protos = text_prototypes(model, loaded.tokenizer, class_prompts(classes, COLOR_SEG_TEMPLATES, BACKGROUND_PROMPTS))
        trunk = visual.trunk
        x = visual.embed_patches(images)
        cls = (trunk.cls_token + trunk.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = trunk.norm_pre(torch.cat([cls, x], dim=1))
        for depth in range(len(trunk.blocks) + 1):
            if depth:
                x = trunk.blocks[depth - 1](x)
            f = F.normalize(visual.project(trunk.norm(x)[:, 1:]).float(), dim=-1)      # f̃^k (Eq. 7)
            B, N, _ = f.shape
            side = int(N ** 0.5)
            probs = torch.einsum("bnd,cd->bcn", f, protos).reshape(B, -1, side, side).softmax(dim=1)
            pred = upsample(probs, masks.shape[-2:]).argmax(dim=1).numpy()
            met = segmentation_metrics(confusion_matrix(pred, masks, len(classes)), classes)
            mean = F.normalize(f.mean(dim=1), dim=-1)
            rows.append({"after_blocks": depth, "miou": met["miou"], "background_iou": met["per_class_iou"]["background"],
                         "pixel_acc": met["pixel_acc"],
                         "patch_cos_to_image_mean": float((f * mean[:, None]).sum(-1).mean())})
            print(json.dumps(rows[-1]))
    out = {"checkpoint": args.checkpoint, "images": args.images, "classes": classes,
           "prompts": {"templates": COLOR_SEG_TEMPLATES, "background": BACKGROUND_PROMPTS}, "by_depth": rows}
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
