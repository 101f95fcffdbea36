"""Accumulation with the whole accumulated batch as negatives, compared with one big batch: used in
process by test_accum_negatives and, under torchrun (2 ranks, gloo), as a script. Each rank takes its
half of a fixed global batch; the step runs once as `accum` micro-batches and once as one batch, with
SGD at lr 0 so the weights stay put and `p.grad` holds the step's (DDP-averaged) gradient."""
import sys

import torch

import rils
from rils import distributed as D
from rils.train.step import data_parallel, train_step

OPTIONS = dict(num_prototypes=16, ssl_mlp_dim=32, ssl_emb_dim=16)
COLOURS = ["red", "blue", "green", "pink", "gray", "tan", "gold", "teal"]
SHAPES = ["circle", "square", "star", "cross", "ring", "moon", "heart", "arrow"]


def global_batch(n: int, views: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    captions = [f"a {COLOURS[i % 8]} {SHAPES[(i // 8 + i) % 8]}" for i in range(n)]
    batch = {"image": torch.randn(n, 3, 32, 32, generator=g),
             "text": rils.get_tokenizer("vit_nano8_32")(captions),
             "seed": torch.arange(n) + 1000 * seed}
    if views:
        batch["views"] = torch.randn(n, 2, 3, 32, 32, generator=g)
    return batch


def build(name: str, **options):
    torch.manual_seed(0)
    return rils.create_method(name, rils.create_model("vit_nano8_32", method=name), **{**OPTIONS, **options})


def seed_with_matches(name: str, n: int) -> int:
    """A batch seed whose global batch of n has a non-empty set C at init (else RILS's
    reconstruction term is 0 and the comparison proves nothing about it)."""
    method = build(name)
    for seed in range(50):
        batch = global_batch(n, method.needs_views, seed)
        with torch.no_grad():
            feats = method.features(batch)
            _, matched, _ = method.contrastive(feats["image"], feats["text"])
        if matched.any():
            return seed
    raise AssertionError("no batch seed gives a non-empty C")


def one_step(method, net, batch: dict, accum: int, accum_negatives: bool = True):
    """(mean of each output over the micro-batches, {name: gradient}) of one train_step."""
    n = batch["image"].shape[0]
    size = n // accum
    micro = [{k: v[i:i + size] for k, v in batch.items()} for i in range(0, n, size)]
    opt = torch.optim.SGD(method.parameters(), lr=0.0)
    result = train_step(net, method, opt, micro, device=torch.device("cpu"), precision="fp32",
                        accum_negatives=accum_negatives)
    means = {k: v / len(micro) for k, v in result.sums.items()}
    return means, {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}


def compare(name: str, per_rank: int, accum: int, seed: int = 0, **options):
    """This rank's slice of a global batch of per_rank x world samples, stepped both ways."""
    method = build(name, **options)
    net = data_parallel(method, torch.device("cpu")) if D.is_distributed() else method
    batch = global_batch(per_rank * D.world_size(), method.needs_views, seed)
    mine = {k: v[D.rank() * per_rank:(D.rank() + 1) * per_rank] for k, v in batch.items()}
    return {"accum": one_step(method, net, mine, accum), "one": one_step(method, net, mine, 1),
            "plain": one_step(method, net, mine, accum, accum_negatives=False)}


def main(out_path, name, per_rank, accum, seed):
    torch.distributed.init_process_group("gloo")
    try:
        result = compare(name, int(per_rank), int(accum), int(seed))
        for means, _ in result.values():   # logged values are averaged over ranks, as the engine does
            for k, v in means.items():
                means[k] = D.all_reduce_sum(torch.tensor(v, dtype=torch.float64)).item() / D.world_size()
        if D.rank() == 0:
            torch.save(result, out_path)
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
