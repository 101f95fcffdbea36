"""Each loss against an independent computation written out element by element."""
import math

import torch

from rils import losses as L


def test_contrastive_loss_matches_eq_5_6():
    torch.manual_seed(1)
    img, txt, scale = torch.randn(4, 3), torch.randn(4, 3), 7.0
    zi = [v / v.norm() for v in img]
    zt = [v / v.norm() for v in txt]
    B = 4
    i2t = -sum(math.log(math.exp(scale * float(zi[i] @ zt[i])) /
                        sum(math.exp(scale * float(zi[i] @ zt[j])) for j in range(B))) for i in range(B)) / B
    t2i = -sum(math.log(math.exp(scale * float(zt[i] @ zi[i])) /
                        sum(math.exp(scale * float(zt[i] @ zi[j])) for j in range(B))) for i in range(B)) / B
    assert abs(L.contrastive_loss(img, txt, scale).item() - 0.5 * (i2t + t2i)) < 1e-5


def _hand_recon(f, g, z, mask, matched, t1, t2):
    """-Σ sg[p] log q, minus the entropy of p: KL(p‖q), averaged over masked patches of C."""
    total, count = 0.0, 0
    zn = [v / v.norm() for v in z]
    for i in range(f.shape[0]):
        if not matched[i]:
            continue
        for k in range(f.shape[1]):
            if not mask[i, k]:
                continue
            fk, gk = f[i, k] / f[i, k].norm(), g[i, k] / g[i, k].norm()
            ep = [math.exp(float(fk @ zl) / t1) for zl in zn]
            eq = [math.exp(float(gk @ zl) / t2) for zl in zn]
            p = [e / sum(ep) for e in ep]
            q = [e / sum(eq) for e in eq]
            total += sum(pl * (math.log(pl) - math.log(ql)) for pl, ql in zip(p, q))
            count += 1
    return total / count


def _recon_inputs():
    torch.manual_seed(2)
    f, g, z = torch.randn(3, 5, 4), torch.randn(3, 5, 4), torch.randn(6, 4)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    matched = torch.tensor([True, False, True])
    return f, g, z, mask, matched


def test_reconstruction_loss_matches_eq_7_9():
    f, g, z, mask, matched = _recon_inputs()
    ours = L.language_space_reconstruction_loss(f, g, z, mask, matched, 0.04, 0.1)
    assert abs(ours.item() - _hand_recon(f, g, z, mask, matched, 0.04, 0.1)) < 1e-4


def test_reconstruction_loss_gradient_is_cross_entropy_and_stops_at_the_target():
    f, g, z, mask, matched = _recon_inputs()
    f.requires_grad_(True), g.requires_grad_(True), z.requires_grad_(True)
    L.language_space_reconstruction_loss(f, g, z, mask, matched).backward()
    assert f.grad is None or torch.all(f.grad == 0)                 # sg on the target
    # Same gradient as the paper's -Σ sg[p] log q (Eq. 9), written out with autograd on q only
    g2, z2 = g.detach().clone().requires_grad_(True), z.detach().clone().requires_grad_(True)
    sel = mask & matched[:, None]
    zn = torch.nn.functional.normalize(z2, dim=-1)
    p = torch.softmax(torch.nn.functional.normalize(f.detach()[sel], dim=-1) @ zn.detach().T / 0.04, -1)
    log_q = torch.log_softmax(torch.nn.functional.normalize(g2[sel], dim=-1) @ zn.T / 0.1, -1)
    (-(p * log_q).sum(-1).mean()).backward()
    assert torch.allclose(g.grad, g2.grad, atol=1e-6) and torch.allclose(z.grad, z2.grad, atol=1e-6)


def test_unmatched_images_change_nothing():
    f, g, z, mask, matched = _recon_inputs()
    base = L.language_space_reconstruction_loss(f, g, z, mask, matched)
    f2, g2 = f.clone(), g.clone()
    f2[1], g2[1] = torch.randn(5, 4) * 10, torch.randn(5, 4) * 10          # image 1 is not in C
    assert torch.equal(base, L.language_space_reconstruction_loss(f2, g2, z, mask, matched))
    g2[0, 1] = 99.0                                                      # visible patch of a matched image
    assert torch.equal(base, L.language_space_reconstruction_loss(f2, g2, z, mask, matched))
    g2[0, 0] = 99.0                                                      # masked patch of a matched image
    assert not torch.equal(base, L.language_space_reconstruction_loss(f2, g2, z, mask, matched))


def test_empty_matched_set_gives_zero_and_backward_works():
    f, g, z, mask, _ = _recon_inputs()
    g.requires_grad_(True)
    loss = L.language_space_reconstruction_loss(f, g, z, mask, torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(g.grad == 0)


def test_mae_pixel_loss_by_hand():
    torch.manual_seed(3)
    images = torch.randn(2, 3, 4, 4)
    p = 2
    pred = torch.randn(2, 4, p * p * 3)
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.bool)
    total, n = 0.0, 0
    for b in range(2):
        for idx in range(4):
            if not mask[b, idx]:
                continue
            r, c = divmod(idx, 2)
            patch = images[b, :, r * p:(r + 1) * p, c * p:(c + 1) * p].permute(1, 2, 0).reshape(-1)  # (p, q, c)
            target = (patch - patch.mean()) / (patch.var() + 1e-6).sqrt()
            total += float(((pred[b, idx] - target) ** 2).mean())
            n += 1
    assert abs(L.mae_pixel_loss(images, pred, mask, p).item() - total / n) < 1e-5
    # the decoder's predictions at the masked patches only (`at`, same count per image) give the same loss
    at = torch.tensor([[0, 3], [1, 2]])
    mask_at = torch.tensor([[True, True], [True, False]])
    assert abs(L.mae_pixel_loss(images, pred.gather(1, at.unsqueeze(-1).expand(-1, -1, 12)), mask_at, p, at=at).item()
               - total / n) < 1e-5


def test_simclr_loss_by_hand():
    torch.manual_seed(4)
    z1, z2, tau = torch.randn(3, 4), torch.randn(3, 4), 0.1
    a = [v / v.norm() for v in z1]
    b = [v / v.norm() for v in z2]

    def nt_xent(x, y):
        out = 0.0
        for i in range(3):
            pos = math.exp(float(x[i] @ y[i]) / tau)
            denom = sum(math.exp(float(x[i] @ y[j]) / tau) for j in range(3))
            denom += sum(math.exp(float(x[i] @ x[j]) / tau) for j in range(3) if j != i)
            out += -math.log(pos / denom)
        return out / 3

    expected = 0.5 * (nt_xent(a, b) + nt_xent(b, a))
    assert abs(L.simclr_loss(z1, z2, tau).item() - expected) < 1e-4


def test_reconstruction_loss_reads_nothing_back_to_the_host():
    """No data-dependent host read (a boolean index, `bool(tensor)`): on a GPU each one stalls the
    step's queue. torch._dynamo traces the loss in one graph only if there is none."""
    import torch._dynamo
    f, g, z, mask, matched = _recon_inputs()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(L.language_space_reconstruction_loss)(f, g, z, mask, matched)
    assert explained.graph_break_count == 0, explained.break_reasons
