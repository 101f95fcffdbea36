"""Run by test_ddp_equivalence (plain or under torchrun): one training step of the real method on the
real data pipeline (`train_step`, SGD at lr 0 so `p.grad` holds the step's gradient); rank 0 saves
the DDP-averaged gradients."""
import sys

import torch

from rils import create_method, create_model
from rils import distributed as D
from rils.train.config import load_config
from rils.train.data import build_train_data, epoch_batches
from rils.train.engine import setup_distributed
from rils.train.step import data_parallel, train_step


def main(out_path, *overrides):
    cfg = load_config("demo", list(overrides))
    device = setup_distributed(cfg)
    torch.manual_seed(cfg.seed)
    method = create_method(cfg.method, create_model(cfg.model.preset, cfg.method), cfg.loss).to(device)
    net = data_parallel(method, device) if D.is_distributed() else method
    data = build_train_data(cfg)
    batch = next(epoch_batches(data, cfg, epoch=0, rank=D.rank(), world=D.world_size(), start=0, pin_memory=False))
    batch.pop("skipped")
    train_step(net, method, torch.optim.SGD(method.parameters(), lr=0.0), [batch], device=device,
               precision="fp32")
    if D.rank() == 0:
        torch.save({n: p.grad for n, p in method.named_parameters() if p.grad is not None}, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
