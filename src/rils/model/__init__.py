from .dual_encoder import DualEncoder, METHOD_PARTS
from .masking import random_masking
from .vision import VisionEncoder
from .decoder import MaskedDecoder
