"""Why the demo's semantic map gives every patch one label: read the per-patch distribution of Eq. 8
out of the tokens after each block (through the final norm and θ), on held-out demo images, and
report the colour patch-segmentation mIoU, the background IoU, and how close each patch's
embedding is to its image's mean embedding (1.0: every patch says what the whole image says).

Whether the patches know where they are, even when Eq. 8's argmax does not show it: each patch gets
the majority label of its pixels; a logistic-regression probe on f̃^k (fit on the first two thirds
of the images, scored on the rest) predicts foreground/background and the colour class, next to the
majority-class rate. On the final tokens also: how often Eq. 8 gives a foreground patch its own
colour when only the colour prompts compete, and how often it gives a background patch the colour
of its image's shape.
Usage: patch_locality.py CKPT OUT.json [--images 300]"""
import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

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
        B, N, _ = x.shape
        side = int(N ** 0.5)
        labels = patch_majority_labels(masks, side, len(classes))   # [B, N] majority class of each patch's pixels
        cls = (trunk.cls_token + trunk.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = trunk.norm_pre(torch.cat([cls, x], dim=1))
        for depth in range(len(trunk.blocks) + 1):
            if depth:
                x = trunk.blocks[depth - 1](x)
            f = F.normalize(visual.project(trunk.norm(x)[:, 1:]).float(), dim=-1)      # f̃^k (Eq. 7)
            probs = torch.einsum("bnd,cd->bcn", f, protos).reshape(B, -1, side, side).softmax(dim=1)
            pred = upsample(probs, masks.shape[-2:]).argmax(dim=1).numpy()
            met = segmentation_metrics(confusion_matrix(pred, masks, len(classes)), classes)
            mean = F.normalize(f.mean(dim=1), dim=-1)
            rows.append({"after_blocks": depth, "miou": met["miou"], "background_iou": met["per_class_iou"]["background"],
                         "pixel_acc": met["pixel_acc"],
                         "patch_cos_to_image_mean": float((f * mean[:, None]).sum(-1).mean()),
                         **probe(f.numpy(), labels)})
            print(json.dumps(rows[-1]))
    scores = torch.einsum("bnd,cd->bnc", f, protos).numpy()     # final tokens, Eq. 8 before the softmax
    fg = labels > 0
    own_colour = scores[..., 1:].argmax(-1) + 1
    image_colour = np.array([np.bincount(row[row > 0]).argmax() if (row > 0).any() else 0 for row in labels])
    eq8 = scores.argmax(-1)
    final = {"fg_patches_own_colour_among_colours": float((own_colour[fg] == labels[fg]).mean()),
             "bg_patches_given_their_image_colour": float((eq8 == image_colour[:, None])[~fg & (image_colour[:, None] > 0)].mean()),
             "bg_patches_given_background": float((eq8[~fg] == 0).mean())}
    print(json.dumps(final))
    out = {"checkpoint": args.checkpoint, "images": args.images, "classes": classes, "final_tokens": final,
           "prompts": {"templates": COLOR_SEG_TEMPLATES, "background": BACKGROUND_PROMPTS}, "by_depth": rows}
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)


def patch_majority_labels(masks: np.ndarray, side: int, num_classes: int) -> np.ndarray:
    B, H, W = masks.shape
    blocks = masks.reshape(B, side, H // side, side, W // side).transpose(0, 1, 3, 2, 4).reshape(B, side * side, -1)
    return np.stack([[np.bincount(p, minlength=num_classes).argmax() for p in img] for img in blocks])


def probe(f: np.ndarray, labels: np.ndarray) -> dict:
    """Linear-probe accuracy of foreground/background and of the colour class from single patches."""
    B, N, D = f.shape
    cut = (2 * B // 3) * N
    x, y = f.reshape(B * N, D), labels.reshape(-1)
    out = {}
    for name, target in (("fg_bg", (y > 0).astype(int)), ("colour_class", y)):
        clf = LogisticRegression(max_iter=2000).fit(x[:cut], target[:cut])
        out[f"probe_{name}_acc"] = float(clf.score(x[cut:], target[cut:]))
        out[f"probe_{name}_majority"] = float(np.bincount(target[cut:]).max() / len(target[cut:]))
    return out


if __name__ == "__main__":
    main()
