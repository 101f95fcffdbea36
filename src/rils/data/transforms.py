"""Image transforms for pre-training (evaluation uses open_clip's, see rils.eval.models)."""
from __future__ import annotations

from torchvision import transforms as T

from ..presets import IMAGE_MEAN as MEAN, IMAGE_STD as STD


def train_transform(size: int, min_scale: float = 0.5):
    """The same for every method, so the comparison is fair: CLIP/SLIP's random resized crop
    (scale 0.5-1). No flip: captions say "left" and "right"."""
    return T.Compose([T.RandomResizedCrop(size, scale=(min_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                      T.ToTensor(), T.Normalize(MEAN, STD)])


def simclr_view_transform(size: int):
    """SLIP's SimCLR augmentation for the two extra views."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(kernel_size=max(3, (size // 10) | 1), sigma=(0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(), T.Normalize(MEAN, STD)])
