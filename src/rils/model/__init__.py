"""The dual encoder and its parts."""
from .dual_encoder import DualEncoder
from .masking import random_masking
from .vision import VisionEncoder
from .decoder import MaskedDecoder

__all__ = ["DualEncoder", "MaskedDecoder", "VisionEncoder", "random_masking"]
