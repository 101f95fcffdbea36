"""Per-sample random masking (MAE): shuffle the patches by argsort of uniform noise, keep the first ones."""
import torch


def random_masking(noise: torch.Tensor, mask_ratio: float):
    """noise: [B, N] uniform. Returns (ids_keep [B, L], mask [B, N] bool, True = masked, ids_restore [B, N]).

    L = int(N * (1 - mask_ratio)) visible patches per sample. `ids_restore` inverts the shuffle:
    gathering [visible, masked] tokens with it puts every token back at its own position.
    """
    B, N = noise.shape
    len_keep = int(N * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(B, N, dtype=torch.bool, device=noise.device)
    mask[:, :len_keep] = False
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


def mask_noise(batch_size: int, num_patches: int, device, seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform noise for `random_masking`.

    With per-sample `seeds` the mask is a function of the sample alone, so a run gives the same masks
    whatever the number of ranks or workers, and a resumed run replays them exactly.
    """
    if seeds is None:
        return torch.rand(batch_size, num_patches, device=device)
    rows = []
    g = torch.Generator()
    for s in seeds.tolist():
        g.manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
        rows.append(torch.rand(num_patches, generator=g))
    return torch.stack(rows).to(device, non_blocking=True)


def masked_ids(ids_restore: torch.Tensor, num_visible: int) -> torch.Tensor:
    """[B, N - L]: the masked patches of each image (random_masking's shuffle after the visible L)."""
    return torch.argsort(ids_restore, dim=1)[:, num_visible:]


def take_patches(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x [B, N, ...] at the positions ids [B, K] of each row -> [B, K, ...]. Indexing, not gather:
    gather's backward keeps all of x alive; indexing keeps only the indices."""
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), ids]
