"""Run under torchrun (2 ranks, gloo) by test_contrastive_gather: one forward and backward of the clip
method on this rank's half of a fixed batch, under DDP as training runs it, once with
loss.contrastive_gather=local and once with full; rank 0 saves the DDP-averaged gradients of both."""
import sys

import torch
import torch.distributed as dist

import rils
from rils import MethodOptions, create_method, create_model
from rils.train.step import data_parallel

CAPTIONS = ["a red circle", "a blue square", "a green star on the left", "two pink crosses",
            "a gray ring at the top", "a tan moon", "a small yellow circle", "a big purple square"]


def fixed_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(len(CAPTIONS), 3, 32, 32, generator=g),
            "text": rils.get_tokenizer("vit_nano8_32")(CAPTIONS)}


def fresh_model():
    """The same initial weights in every process that calls it."""
    torch.manual_seed(0)
    return create_model("vit_nano8_32", method="clip")


def main(out_path):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    full = fixed_batch()
    n = full["image"].shape[0] // world
    mine = {k: v[rank * n:(rank + 1) * n] for k, v in full.items()}
    grads = {}
    for mode in ("local", "full"):
        method = create_method("clip", fresh_model(), MethodOptions(contrastive_gather=mode))
        net = data_parallel(method, torch.device("cpu"))   # held: its reducer averages in backward()
        net(mine)["loss"].backward()
        grads[mode] = {name: p.grad.clone() for name, p in method.named_parameters() if p.grad is not None}
    if rank == 0:
        torch.save(grads, out_path)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
