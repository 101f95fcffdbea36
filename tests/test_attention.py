"""rils.model.attention: the CPU bf16 path (flash forward, fp32 backward) and the adopted layers."""
import copy

import open_clip
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention as TimmAttention
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from rils.factory import create_model
from rils.model import attention as A


def _qkv(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=g) * 2).to(dtype) for _ in range(3)]


def _run(fn, q, k, v, grad):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves)
    out.backward(grad.to(out.dtype))
    return [out.detach()] + [t.grad for t in leaves]


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("shape,causal,with_mask", [((4, 3, 17, 16), False, False), ((4, 3, 9, 16), False, True),
                                                    ((2, 2, 12, 8), True, False)])
def test_bf16_path_forward_is_pytorchs_and_backward_at_least_as_accurate(shape, causal, with_mask):
    q, k, v = _qkv(shape, torch.bfloat16)
    grad = torch.randn(shape).bfloat16()
    mask = None
    if with_mask:   # open_clip's kind: float, -inf above the diagonal
        mask = torch.full((shape[2], shape[2]), float("-inf")).triu(1)
    ours = _run(lambda a, b, c: A.attention(a, b, c, attn_mask=mask, is_causal=causal), q, k, v, grad)
    theirs = _run(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask, is_causal=causal),
                  q, k, v, grad)
    # The reference's mask in its own dtype: fp64 queries with an fp32 mask give wrong results on some
    # CPUs (relative error ~1 on an AVX2 EPYC with torch 2.14), which would fail this test, not the code.
    exact_mask = None if mask is None else mask.double()
    exact = _run(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=exact_mask, is_causal=causal),
                 q.double(), k.double(), v.double(), grad)
    assert torch.equal(ours[0], theirs[0])                   # the same forward kernel
    for o, t, e in zip(ours[1:], theirs[1:], exact[1:]):
        assert o.dtype == torch.bfloat16
        assert _rel(o, e) <= _rel(t, e) * 1.05 + 1e-6       # no less accurate than the bf16 backward
        assert _rel(o, e) < 1e-2


def test_bf16_path_is_taken_only_where_it_applies(monkeypatch):
    calls = []
    real = A._FlashAttentionFp32Backward.apply
    monkeypatch.setattr(A._FlashAttentionFp32Backward, "apply", lambda *a: calls.append(1) or real(*a))
    q, k, v = [t.requires_grad_() for t in _qkv((2, 2, 8, 8), torch.bfloat16)]
    A.attention(q, k, v)
    assert len(calls) == 1
    A.attention(q.float(), k.float(), v.float())             # fp32: PyTorch's call
    with torch.no_grad():
        A.attention(q, k, v)                                 # no gradient: PyTorch's call
    A.attention(q, k, v, dropout_p=0.1)                      # dropout: PyTorch's call
    with sdpa_kernel(SDPBackend.MATH):
        A.attention(q, k, v)                                 # the user's kernel choice stands
    assert len(calls) == 1


@pytest.mark.parametrize("lengths", [(1, 17), (17, 17), (65, 65)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("mask", [None, "2d", "4d"])
def test_the_rule_used_under_compile_is_pytorchs_cpu_choice(lengths, layout, mask):
    (L, S), (B, H, D) = lengths, (2, 3, 64)
    if layout == "contiguous":
        q, k, v = (torch.randn(B, H, n, D).bfloat16().requires_grad_() for n in (L, S, S))
    else:   # [B, L, H, D] memory seen as [B, H, L, D], as a ViT's qkv split makes it
        q, k, v = (torch.randn(B, n, H, D).bfloat16().transpose(1, 2).requires_grad_() for n in (L, S, S))
    m = {None: None, "2d": torch.randn(L, S), "4d": torch.randn(B, 1, L, S).bfloat16()}[mask]
    for causal in ([False, True] if m is None else [False]):
        expected = torch._fused_sdp_choice(q, k, v, m, 0.0, causal) == A._FLASH
        assert A._cpu_flash_rule(q, k, v) == expected


def test_compiling_the_bf16_path_keeps_one_graph():
    import torch._dynamo
    q, k, v = [t.requires_grad_() for t in _qkv((2, 3, 17, 16), torch.bfloat16)]
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda a, b, c: A.attention(a, b, c) * 2)(q, k, v)
    assert explained.graph_break_count == 0, explained.break_reasons


def test_adopt_keeps_parameters_names_and_outputs():
    torch.manual_seed(0)
    tower = open_clip.model._build_text_tower(32, open_clip.model.CLIPTextCfg(
        context_length=8, vocab_size=100, width=32, heads=2, layers=2))
    vit = TimmAttention(32, num_heads=2, qkv_bias=True)
    for plain in (tower, vit):
        ours = A.adopt(copy.deepcopy(plain))
        assert list(ours.state_dict()) == list(plain.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))
    assert {type(m) for m in A.adopt(copy.deepcopy(tower)).modules()} >= {A.SelfAttention}
    assert not any(type(m) is nn.MultiheadAttention for m in A.adopt(copy.deepcopy(tower)).modules())

    tokens = torch.randint(1, 100, (3, 8))
    x = torch.randn(3, 10, 32)
    for plain, inp in ((tower, tokens), (vit, x)):
        ours = A.adopt(copy.deepcopy(plain))
        torch.testing.assert_close(ours(inp), plain(inp), rtol=1e-5, atol=1e-6)            # fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):                                   # bf16, with grad
            a, b = ours(inp), plain(inp)
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)
        a.float().sum().backward()
        b.float().sum().backward()
        for (n, p), (_, r) in zip(ours.named_parameters(), plain.named_parameters()):
            if r.grad is not None:
                assert _rel(p.grad, r.grad) < 5e-2, n


def test_every_tower_of_the_model_attends_through_rils():
    model = create_model("vit_nano8_32", method="rils")
    kinds = {type(m) for m in model.modules()}
    assert A.ViTAttention in kinds and A.SelfAttention in kinds
    assert TimmAttention not in kinds and nn.MultiheadAttention not in kinds
