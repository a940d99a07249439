"""CLIP's byte-pair tokenizer, offline and without third-party text libraries.

Video-text models (X-CLIP and the other CLIP descendants) read labels as the token ids of OpenAI CLIP's
byte-level BPE: 49,408 ids, of which 256 single bytes, the same 256 closing a word (`</w>`), 48,894
merges and the two markers `<start_of_text>` (49406) and `<end_of_text>` (49407). The merge list ships
with the package (`bpe_simple_vocab_16e6.txt.gz`, see `LICENSE-CLIP-BPE.txt` beside it and
docs/zero_shot.md).

The ids are those of open_clip's default tokenizer (`open_clip.tokenize`), which the published checkpoints
were trained and evaluated with. That tokenizer cleans text with `ftfy` and splits it with the `regex`
package; neither is a dependency here, and what they do is reproduced as follows:

- `ftfy.fix_text`: every fix that does not guess (HTML entities where the line holds no `<`, C1 control
  characters read as Windows-1252, Latin ligatures, full- and half-width forms, curly quotes, line
  breaks, surrogates, terminal escapes, control characters, NFC) is applied in the same order until the
  text stops changing. Its mojibake repair (text decoded with the wrong codec, such as "cafÃ©") is a
  heuristic that is not reproduced: such text tokenises as written.
- `\\p{L}` / `\\p{N}`: general categories L* and N* from `unicodedata`, so the two agree on every character
  assigned in the Unicode version of the running Python (14.0 for Python 3.11); characters assigned
  later count as neither letters nor digits here.
"""

from __future__ import annotations

import gzip
import html
import html.entities
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources

import torch

CONTEXT_LENGTH = 77
START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# The merge file holds more merges than the models use. CLIP keeps the first 49152 - 256 - 2 = 48,894
# (after the file's version line), which with the 2 x 256 byte symbols and the two markers make 49,408 ids.
NUM_MERGES = 49152 - 256 - 2


# ---------------------------------------------------------------------------------------------------
# Bytes <-> printable characters


@cache
def byte_to_char() -> dict[int, str]:
    """The reversible map from the 256 byte values to printable characters that the merges are written in.

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, 0x7F-0xA0, soft hyphen)
    take the characters from U+0100 on, in byte order.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# ---------------------------------------------------------------------------------------------------
# Text cleaning (the deterministic part of ftfy.fix_text, then CLIP's own steps)


def _html_entities() -> dict[str, str]:
    # Entities ftfy decodes: the HTML5 names that end in ';', and the upper-cased spelling of the
    # lower-case ones when upper-casing does not give another entity's name.
    table: dict[str, str] = {}
    for name, char in html.entities.html5.items():
        if not name.endswith(";"):
            continue
        table["&" + name] = char
        if name == name.lower():
            upper = "&" + name.upper()
            if html.unescape(upper) == upper:
                table[upper] = char.upper()
    return table


_ENTITY_RE = re.compile(r"&#?[0-9A-Za-z]{1,24};")
_C1_RE = re.compile("[\x80-\x9f]")
_SINGLE_QUOTES_RE = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES_RE = re.compile("[\u201c-\u201f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR_RE = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_TERMINAL_ESCAPE_RE = re.compile("\x1b\\[[0-9;]*[a-zA-Z]")
# Single characters standing for two Latin letters (Dutch ij, the Serbo-Croatian digraphs, the
# typographic ff/fi/fl/ffi/ffl/long-s-t/st ligatures) to those letters: their compatibility decomposition.
_LIGATURE_CODES = [0x132, 0x133, 0x149, *range(0x1C4, 0x1CD), *range(0x1F1, 0x1F4), *range(0xFB00, 0xFB07)]
_LIGATURES = {
    code: "".join(chr(int(part, 16)) for part in unicodedata.decomposition(chr(code)).split()[1:])
    for code in _LIGATURE_CODES
}
# Full-width ASCII, half-width katakana/hangul and the ideographic space to their usual forms.
_WIDTH = {0x3000: " "} | {
    i: unicodedata.normalize("NFKC", chr(i))
    for i in range(0xFF01, 0xFFF0)
    if unicodedata.normalize("NFKC", chr(i)) != chr(i)
}
# Controls nobody means to keep; the whitespace ones (tab, line feed, form feed, CR) stay, as do joiners,
# direction marks and the C1 block (handled above).
_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF])
_CONTROL |= dict.fromkeys(range(0xFFF9, 0xFFFD))


@cache
def _entity_table() -> dict[str, str]:
    return _html_entities()


def _unescape_entity(match: re.Match[str]) -> str:
    text = match.group(0)
    table = _entity_table()
    if text in table:
        return table[text]
    if text.startswith("&#"):
        decoded = html.unescape(text)
        # A numeric reference html.unescape only partly decodes is left alone.
        return text if ";" in decoded else decoded
    return text


def _c1_as_cp1252(match: re.Match[str]) -> str:
    # Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: those stay as they are.
    char = match.group(0)
    try:
        return char.encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:
        return char


def _join_surrogates(match: re.Match[str]) -> str:
    high, low = (ord(c) for c in match.group(0))
    return chr(0x10000 + (high - 0xD800) * 0x400 + (low - 0xDC00))


def _fix_segment(text: str, unescape: bool) -> str:
    while True:
        before = text
        if unescape:
            text = _ENTITY_RE.sub(_unescape_entity, text)
        text = _C1_RE.sub(_c1_as_cp1252, text)
        text = text.translate(_LIGATURES).translate(_WIDTH)
        text = _SINGLE_QUOTES_RE.sub("'", _DOUBLE_QUOTES_RE.sub('"', text))
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = text.replace("\u2028", "\n").replace("\u2029", "\n").replace("\x85", "\n")
        if _SURROGATE_RE.search(text):
            text = _SURROGATE_RE.sub("\ufffd", _SURROGATE_PAIR_RE.sub(_join_surrogates, text))
        text = _TERMINAL_ESCAPE_RE.sub("", text)
        text = text.translate(_CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def fix_text(text: str) -> str:
    """The deterministic fixes of `ftfy.fix_text` (see the module docstring), line by line.

    As in ftfy, HTML entities are decoded only until a line holding a `<` is met: from that line on, the
    text may be markup and is left as written.
    """
    out = []
    unescape = True
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        line = text[pos:end]
        unescape = unescape and "<" not in line
        out.append(_fix_segment(line, unescape))
        pos = end
    return "".join(out)


def clean(text: str) -> str:
    """The text CLIP's tokenizer splits: fixed, HTML-unescaped twice, whitespace collapsed, lower case."""
    text = html.unescape(html.unescape(fix_text(text))).strip()
    return " ".join(text.split()).lower()


# ---------------------------------------------------------------------------------------------------
# Pre-tokenisation: CLIP's pattern `<markers>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`


_MARKER_OR_CONTRACTION = re.compile(
    "|".join([re.escape(START_OF_TEXT), re.escape(END_OF_TEXT), "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]),
    re.IGNORECASE,
)
_LETTER, _DIGIT, _SPACE, _OTHER = range(4)


def _char_class(char: str) -> int:
    category = unicodedata.category(char)
    if category[0] == "L":
        return _LETTER
    if category[0] == "N":
        return _DIGIT
    # `regex`'s \s is the Unicode White_Space property, a subset of str.isspace; the two differ only on
    # U+001C-U+001F, which the whitespace collapse removes before this runs.
    if char.isspace():
        return _SPACE
    return _OTHER


def pre_tokenize(text: str) -> list[str]:
    """Split cleaned text into the pieces BPE runs on, as CLIP's pattern does with `regex.findall`.

    At each position the alternatives are tried in the pattern's order: a marker or an English
    contraction, a run of letters, one digit, a run of characters that are neither letters, digits nor
    whitespace. Whitespace matches nothing and is skipped.
    """
    pieces = []
    pos, n = 0, len(text)
    while pos < n:
        match = _MARKER_OR_CONTRACTION.match(text, pos)
        if match:
            pieces.append(match.group(0))
            pos = match.end()
            continue
        kind = _char_class(text[pos])
        if kind == _SPACE:
            pos += 1
            continue
        end = pos + 1
        if kind != _DIGIT:
            while end < n and _char_class(text[end]) == kind:
                end += 1
        pieces.append(text[pos:end])
        pos = end
    return pieces


# ---------------------------------------------------------------------------------------------------
# The tokenizer


class ClipTokenizer:
    """CLIP's BPE over UTF-8 bytes: `tokenize(texts)` gives `(input_ids, attention_mask)`, each (N, 77)."""

    def __init__(self, merges: Sequence[tuple[str, str]] | None = None, cache_size: int = 100_000) -> None:
        if merges is None:
            merges = load_merges()
        symbols = list(byte_to_char().values())
        vocab = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + [START_OF_TEXT, END_OF_TEXT]
        self.encoder: dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self.decoder: dict[int, str] = dict(enumerate(vocab))
        self.ranks: dict[tuple[str, str], int] = {pair: i for i, pair in enumerate(merges)}
        self.start_id = self.encoder[START_OF_TEXT]
        self.end_id = self.encoder[END_OF_TEXT]
        self.vocab_size = len(vocab)
        self._byte_to_char = byte_to_char()
        self._char_to_byte = {c: b for b, c in self._byte_to_char.items()}
        # Words recur (labels share their template): their merged ids are kept, up to cache_size words.
        self._cache: dict[str, list[int]] = {}
        self._cache_size = cache_size

    def bpe(self, word: str) -> list[str]:
        """Merge the symbols of one pre-token (byte characters), lowest-ranked adjacent pair first.

        Each round merges every non-overlapping occurrence of the best pair, scanning left to right; the
        last symbol carries `</w>`, so word-final pieces have their own ids.
        """
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            best_rank, best = None, None
            for pair in zip(parts, parts[1:], strict=False):
                rank = self.ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best = rank, pair
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def _word_ids(self, piece: str) -> list[int]:
        if piece in (START_OF_TEXT, END_OF_TEXT):
            return [self.encoder[piece]]
        ids = self._cache.get(piece)
        if ids is None:
            chars = "".join(self._byte_to_char[b] for b in piece.encode("utf-8"))
            ids = [self.encoder[s] for s in self.bpe(chars)]
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """The ids of one text, without the start and end markers."""
        return [i for piece in pre_tokenize(clean(text)) for i in self._word_ids(piece)]

    def tokenize(
        self, texts: str | Iterable[str], context_length: int = CONTEXT_LENGTH
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(input_ids, attention_mask)`, int64 `(N, context_length)`: start, ids, end, zero padding.

        A text longer than the context keeps its first `context_length - 1` tokens and ends with the end
        marker. The mask marks the real tokens (id 0 is also the token "!", so it is not `ids != 0`).
        """
        if context_length < 2:
            raise ValueError(f"context_length must hold the start and end markers, got {context_length}")
        if isinstance(texts, str):
            texts = [texts]
        rows = [[self.start_id, *self.encode(t), self.end_id] for t in texts]
        ids = torch.zeros(len(rows), context_length, dtype=torch.int64)
        mask = torch.zeros(len(rows), context_length, dtype=torch.int64)
        for r, row in enumerate(rows):
            if len(row) > context_length:
                row = row[: context_length - 1] + [self.end_id]
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.int64)
            mask[r, : len(row)] = 1
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text from ids; word ends become spaces (so the text ends with one after a final word).

        With `skip_special` (a row of `tokenize`), the start marker is dropped and decoding stops at the
        end marker, before the padding; without it every id is decoded, as open_clip's `decode` does.
        """
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if skip_special:
            if values and values[0] == self.start_id:
                values = values[1:]
            if self.end_id in values:
                values = values[: values.index(self.end_id)]
        # Every character of a token (markers and `</w>` included) is a printable byte's stand-in; bytes
        # that do not form UTF-8 (a piece cut inside a character) become U+FFFD.
        chars = "".join(self.decoder[int(i)] for i in values)
        raw = bytes(self._char_to_byte[c] for c in chars)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")


def load_merges() -> list[tuple[str, str]]:
    """The merges CLIP uses, in rank order, from the packaged `bpe_simple_vocab_16e6.txt.gz`."""
    data = resources.files(__package__).joinpath(VOCAB_FILE).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")[1 : 1 + NUM_MERGES]
    merges = []
    for line in lines:
        first, second = line.split()
        merges.append((first, second))
    return merges


@cache
def default_tokenizer() -> ClipTokenizer:
    """The shared tokenizer (the vocabulary is read once per process)."""
    return ClipTokenizer()


def tokenize(texts: str | Iterable[str], context_length: int = CONTEXT_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask)` of CLIP tokens, each int64 `(N, context_length)`."""
    return default_tokenizer().tokenize(texts, context_length)


def decode(ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
    """Text of a row of token ids (see `ClipTokenizer.decode`)."""
    return default_tokenizer().decode(ids, skip_special)
