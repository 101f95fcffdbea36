"""What a forward keeps for its backward pass, for tests that check memory without timing anything."""
import torch


def saved_activation_bytes(fn, module: torch.nn.Module):
    """(bytes of the tensors autograd saves while `fn()` runs, fn's result), leaving out the
    parameters of `module` (a saved weight is no extra memory)."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    total = [0]

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            total[0] += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total[0], out
