"""Text conditions: captions as tokens, and the encoders that read them.

Tokens are a LongTensor (B, L) with -1 in the padding, so one layout serves both tokenizers: bytes of
the UTF-8 text (0..255, no vocabulary to ship or download), or the ids of a pretrained model's own
tokenizer. ``tokens = "words"`` reads a caption as words instead, each a bag of hashed byte n-grams
(fastText's subword units: Bojanowski et al. 2017), a LongTensor (B, L, GRAMS): no vocabulary either, a
word the captions never held still shares n-grams with the trained words it contains or respells
("armchair" with "chair"), and a transformer over words runs on a fifth of the positions of one over
bytes. ``ByteTextEncoder`` and ``WordTextEncoder`` are small transformers trained with the diffusion model
from the dataset's captions; ``PretrainedTextEncoder`` wraps a CLIP text or T5 encoder loaded by ``transformers``
from a local folder and kept frozen (only a projection to the model's width is trained). The frozen
model is held outside the module tree, so checkpoints pin its folder instead of copying its weights.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import torch
from torch import nn

from multidiff.engine.errors import UserError

PAD = -1


class ByteTokenizer:
    """UTF-8 bytes, at most ``max_length`` of them."""

    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, texts: list[str], where: str) -> torch.Tensor:
        out = torch.full((len(texts), self.max_length), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            data = text.encode("utf-8")
            if len(data) > self.max_length:
                raise UserError(f"{where}: the text {text[:40]!r}... is {len(data)} bytes, longer than the "
                                f"{self.max_length} its encoder takes (max_length)")
            out[i, :len(data)] = torch.tensor(list(data), dtype=torch.long)
        return out

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))


class PretrainedTokenizer:
    """The tokenizer saved with a pretrained text encoder in its folder."""

    def __init__(self, folder: str, max_length: int):
        self.tokenizer = _transformers().AutoTokenizer.from_pretrained(_folder(folder))
        self.max_length = max_length

    def __call__(self, texts: list[str], where: str) -> torch.Tensor:
        out = torch.full((len(texts), self.max_length), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) > self.max_length:
                raise UserError(f"{where}: the text {text[:40]!r} is {len(ids)} tokens, longer than the "
                                f"{self.max_length} its encoder takes (max_length)")
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def count(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])


BUCKETS = 4096          # rows of the n-gram table a word tokenizer hashes into
GRAMS = 32              # n-grams kept per word: a word of up to 11 letters keeps them all
NGRAMS = (3, 4, 5)


class WordTokenizer:
    """Lowercased words (runs of non-space characters), at most ``max_length`` of them, each as the CRC-32
    buckets of itself and of its 3- to 5-grams of bytes between boundary marks ("<chair>": "<ch", "cha",
    ..., "air>"), the whole word first, at most GRAMS of them."""

    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, texts: list[str], where: str) -> torch.Tensor:
        out = torch.full((len(texts), self.max_length, GRAMS), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            words = text.lower().split()
            if len(words) > self.max_length:
                raise UserError(f"{where}: the text {text[:40]!r} is {len(words)} words, longer than the "
                                f"{self.max_length} its encoder takes (max_length)")
            for j, word in enumerate(words):
                ids = word_buckets(word)
                out[i, j, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def count(self, text: str) -> int:
        return len(text.split())


def word_buckets(word: str) -> list[int]:
    """The buckets of ``word``: the whole marked word, then its n-grams in order of length and place, each
    bucket once."""
    marked = b"<" + word.encode("utf-8") + b">"
    grams = [marked] + [marked[k:k + n] for n in NGRAMS for k in range(len(marked) - n + 1)]
    buckets = list(dict.fromkeys(zlib.crc32(g) % BUCKETS for g in grams))
    return buckets[:GRAMS]


def present(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) bools, True at a real token, of bytes or pretrained ids (B, L) or words (B, L, GRAMS)."""
    return (ids if ids.ndim == 2 else ids[..., 0]) != PAD


def tokenizer(spec: dict):
    """The tokenizer of a text condition's spec; ``encoder`` builds the encoder that reads its tokens."""
    if spec["pretrained"]:
        return PretrainedTokenizer(spec["pretrained"], spec["max_length"])
    return WordTokenizer(spec["max_length"]) if spec["tokens"] == "words" else ByteTokenizer(spec["max_length"])


def encoder(spec: dict, width: int) -> nn.Module:
    """The encoder of a text condition's spec, at the backbone's ``width``: it reads ``tokenizer(spec)``'s tokens."""
    if spec["pretrained"]:
        return PretrainedTextEncoder(spec["pretrained"], width)
    kind = WordTextEncoder if spec["tokens"] == "words" else ByteTextEncoder
    return kind(width, spec["max_length"], spec["layers"], spec["heads"])


class _TextTransformer(nn.Module):
    """Embedded tokens + learned positions -> a pre-norm transformer encoder -> (tokens, mask); a subclass
    embeds its own kind of token."""

    def __init__(self, width: int, max_length: int, layers: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"the text encoder's width ({width}) must be a multiple of its heads ({heads})")
        self.position = nn.Parameter(torch.randn(max_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = present(ids)
        h = self.transformer(self.embed(ids) + self.position[:ids.shape[1]], src_key_padding_mask=~mask)
        return self.norm(h), mask


class ByteTextEncoder(_TextTransformer):
    """Bytes (B, L), each a learned embedding."""

    def __init__(self, width: int, max_length: int, layers: int, heads: int):
        super().__init__(width, max_length, layers, heads)
        self.bytes = nn.Embedding(256, width)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.bytes(ids.clamp(min=0))


class WordTextEncoder(_TextTransformer):
    """Words (B, L, GRAMS), each the mean of its n-gram embeddings. The n-gram table starts at zero, so an
    n-gram no caption held stays zero: a word never seen is what it shares with the trained ones."""

    def __init__(self, width: int, max_length: int, layers: int, heads: int):
        super().__init__(width, max_length, layers, heads)
        self.grams = nn.Embedding(BUCKETS, width)
        nn.init.zeros_(self.grams.weight)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        real = (ids != PAD).unsqueeze(-1)
        return (self.grams(ids.clamp(min=0)) * real).sum(2) / real.sum(2).clamp(min=1)


class PretrainedTextEncoder(nn.Module):
    """A frozen CLIP text or T5 encoder's last hidden states, projected to ``width``."""

    def __init__(self, folder: str, width: int):
        super().__init__()
        transformers = _transformers()
        config = transformers.AutoConfig.from_pretrained(_folder(folder))
        if config.model_type == "t5":
            model = transformers.T5EncoderModel.from_pretrained(folder)
        elif config.model_type in ("clip", "clip_text_model"):
            model = transformers.CLIPTextModel.from_pretrained(folder)
        else:
            raise UserError(f"{folder}: a {config.model_type!r} model; the text encoder must be CLIP text or T5")
        model.requires_grad_(False).eval()
        self._frozen = [model]              # outside the module tree: not trained, not saved
        self.pad_id = config.pad_token_id or 0
        self.project = nn.Linear(model.config.hidden_size, width)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self._frozen[0].to(ids.device)
        mask = ids != PAD
        with torch.no_grad():
            hidden = model(input_ids=torch.where(mask, ids, self.pad_id), attention_mask=mask.long()).last_hidden_state
        return self.project(hidden.to(self.project.weight.dtype)), mask


def _folder(folder: str) -> str:
    if not Path(folder).is_dir():
        raise UserError(f"pretrained text encoder folder not found: {folder}")
    return folder


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("a pretrained text encoder needs the transformers package: "
                        "pip install 'multidiff[text]'") from None
    return transformers
