"""Video-text models: CLIP's text side (tokenizer, text encoder) for zero-shot recognition from labels."""

from videozoo.models.video_text.text_encoder import ClipTextEncoder, TextConfig, load_text_encoder
from videozoo.models.video_text.tokenizer import CONTEXT_LENGTH, ClipTokenizer, decode, tokenize

__all__ = [
    "CONTEXT_LENGTH",
    "ClipTextEncoder",
    "ClipTokenizer",
    "TextConfig",
    "decode",
    "load_text_encoder",
    "tokenize",
]
