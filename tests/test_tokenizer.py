"""CLIP's byte-pair tokenizer: the X-CLIP fixture's ids, open_clip's ids on a table of prompts, the rules.

tests/data/clip_tokens.json holds open_clip's ids for the table (written by
scripts/clip_token_reference.py), so the comparison runs everywhere; where open_clip_torch, ftfy and regex
are installed, the same prompts and random texts are also compared with open_clip directly.
"""

from __future__ import annotations

import importlib.util
import json
import random
import unicodedata
from pathlib import Path

import pytest
import torch

from videozoo.models.video_text import ClipTokenizer, decode, tokenize
from videozoo.models.video_text.tokenizer import _DIGIT, _LETTER, _char_class, clean, default_tokenizer, pre_tokenize

REFERENCE = json.loads((Path(__file__).parent / "data" / "clip_tokens.json").read_text())
CASES = REFERENCE["cases"]


def _check_row(ids: torch.Tensor, mask: torch.Tensor, expected: list[int]) -> None:
    n = len(expected)
    assert ids[:n].tolist() == expected
    assert not ids[n:].any(), "padding must be zeros"
    assert mask.tolist() == [1] * n + [0] * (ids.numel() - n)


def test_fixture_prompts_give_the_fixture_ids_and_mask():
    from fixtures_util import FIXTURES, load_fixture

    if not (FIXTURES / "transformers" / "xclip_b32_8f.json").is_file():
        pytest.skip(f"X-CLIP fixture not found under {FIXTURES}")
    fx = load_fixture("transformers/xclip_b32_8f")
    ids, mask = tokenize(fx["text_prompts"])
    assert ids.dtype == mask.dtype == torch.int64
    assert ids.shape == mask.shape == (3, 77)
    assert ids.tolist() == fx["input_ids"]
    assert mask.tolist() == fx["attention_mask"]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}:{c['text'][:24]!r}" for i, c in enumerate(CASES)])
def test_prompt_table_matches_open_clip_reference(case):
    ids, mask = tokenize([case["text"]])
    assert ids.shape == (1, 77)
    _check_row(ids[0], mask[0], case["ids"])


def test_batch_rows_are_independent_and_a_string_is_one_row():
    texts = [c["text"] for c in CASES]
    ids, mask = tokenize(texts)
    assert ids.shape == (len(texts), 77)
    for r, case in enumerate(CASES):
        _check_row(ids[r], mask[r], case["ids"])
    one, _ = tokenize(CASES[0]["text"])
    assert one.tolist() == ids[:1].tolist()


def test_mask_counts_token_zero_inside_the_text():
    # Id 0 is the byte "!" not ending a word; it is a real token, not padding.
    ids, mask = tokenize(["!🙂 a"])
    n = int(mask.sum())
    assert ids[0, 1].item() == 0
    assert ids[0, n - 1].item() == default_tokenizer().end_id
    assert mask[0, :n].all() and n == 5


def test_truncation_keeps_the_end_marker_at_the_last_position():
    tok = default_tokenizer()
    ids, mask = tokenize(["a " * 20], context_length=8)
    assert ids.tolist() == [[tok.start_id, *[320] * 6, tok.end_id]]
    assert mask.tolist() == [[1] * 8]
    exact, exact_mask = tokenize(["a " * 6], context_length=8)
    assert exact.tolist() == ids.tolist() and exact_mask.tolist() == mask.tolist()
    with pytest.raises(ValueError, match="context_length"):
        tokenize(["a"], context_length=1)


def test_vocabulary_size_and_markers():
    tok = default_tokenizer()
    assert tok.vocab_size == 49408
    assert (tok.start_id, tok.end_id) == (49406, 49407)
    assert tok.decoder[256] == "!</w>" and tok.decoder[320] == "a</w>"


def test_decode_inverts_tokenize():
    ids, _ = tokenize(["A video of a DOG running!", "Человек играет на гитаре 🎸", ""])
    assert decode(ids[0]) == "a video of a dog running ! "
    assert decode(ids[1]) == "человек играет на гитаре 🎸 "
    assert decode(ids[2]) == ""
    # Without skipping, the markers and padding are decoded too (padding id 0 is "!").
    assert decode(ids[2, :4], skip_special=False) == "<start_of_text><end_of_text>!!"


def test_pre_tokenize_letters_digits_and_marks_in_several_scripts():
    # Letters run together, each digit stands alone, anything else runs together; combining marks
    # (category M) are not letters, so Devanagari words split at their vowel signs and viramas.
    assert pre_tokenize("abc123def") == ["abc", "1", "2", "3", "def"]
    assert pre_tokenize("it's!! dogs' 's") == ["it", "'s", "!!", "dogs", "'", "'s"]
    assert pre_tokenize("弹吉他，很好") == ["弹吉他", "，", "很好"]
    assert pre_tokenize("человек играет") == ["человек", "играет"]
    assert pre_tokenize("٣ أشخاص ١٢") == ["٣", "أشخاص", "١", "٢"]
    assert pre_tokenize("व्यक्ति") == ["व", "्", "यक", "्", "त", "ि"]
    assert pre_tokenize("ⅻ ½²") == ["ⅻ", "½", "²"]
    assert pre_tokenize("<start_of_text>a<end_of_text>") == ["<start_of_text>", "a", "<end_of_text>"]


def test_clean_applies_the_text_fixes():
    assert clean("It’s “ＬＯＵＤ” &amp;amp; ﬁne") == 'it\'s "loud" & fine'
    # HTML entities: ftfy's pass stops at the first line holding '<'; CLIP's own two passes remain.
    assert clean("x &amp;amp;amp;amp;") == "x &"
    assert clean("<b> &amp;amp;amp;amp;") == "<b> &amp;amp;"
    assert clean("\x93c1\x94 \x1b[31mred\x1b[0m bell\x07 e\u0301") == '"c1" red bell é'
    assert clean("  tabs\tand\nlines\u3000 ") == "tabs and lines"


def test_bpe_merges_lowest_rank_first_left_to_right():
    tok = ClipTokenizer(merges=[("b", "c"), ("a", "b"), ("a", "a")])
    # (b, c) outranks (a, b): merging (a, b) first would give ["ab", "c", "d</w>"].
    assert tok.bpe("abcd") == ["a", "bc", "d</w>"]
    # Occurrences of one pair merge left to right without overlapping.
    assert tok.bpe("aaaa") == ["aa", "a", "a</w>"]
    assert tok.bpe("x") == ["x</w>"]
    ids = tok.encode("ABCD abcd")
    assert ids == [tok.encoder["a"], tok.encoder["bc"], tok.encoder["d</w>"]] * 2
    assert "abcd" in tok._cache


# ---------------------------------------------------------------------------------------------------
# Direct comparison with open_clip (only its tokenizer module: importing the package needs a working
# torchvision). To run: pip install --no-deps open_clip_torch; pip install ftfy regex.


def _open_clip_tokenizer():
    pytest.importorskip("ftfy", reason="open_clip's tokenizer needs ftfy")
    pytest.importorskip("regex", reason="open_clip's tokenizer needs regex")
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch not installed (pip install --no-deps open_clip_torch ftfy regex)")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("open_clip_tokenizer_under_test", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _random_texts(count: int, seed: int) -> list[str]:
    # Scripts, symbols, emoji, whitespace, controls, markers, entities, contractions. Latin-1 and C1
    # characters are left out: runs of them can look like mojibake, which ftfy repairs and we do not.
    pools = [(0x20, 0x7F), (0x250, 0x2AF), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F)]
    pools += [(0xE00, 0xE7F), (0x3040, 0x30FF), (0x4E00, 0x4F00), (0xAC00, 0xAC80), (0x1F300, 0x1F64F)]
    pools += [(0x2000, 0x206F), (0xFF00, 0xFFEF), (0x0, 0x20), (0x1D400, 0x1D4FF), (0xFE00, 0xFE10)]
    words = ["'s", "'ll", "&amp;", "&lt;", "<", "&#39;", "&EACUTE;", "<start_of_text>", "’", "ﬁ", "\x1b[1m", "\n"]
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 20)):
            if rng.random() < 0.3:
                parts.append(rng.choice(words))
            else:
                lo, hi = rng.choice(pools)
                parts.append("".join(chr(rng.randrange(lo, hi)) for _ in range(rng.randint(1, 6))))
        texts.append("".join(parts))
    return texts


def test_matches_open_clip_token_for_token():
    ref = _open_clip_tokenizer()
    texts = [c["text"] for c in CASES] + _random_texts(300, seed=0)
    for context_length in (77, 16):
        expected = ref.tokenize(texts, context_length=context_length)
        ids, mask = tokenize(texts, context_length=context_length)
        for r, text in enumerate(texts):
            assert ids[r].tolist() == expected[r].tolist(), repr(text)
            n = min(len(ref._tokenizer.encode(text)) + 2, context_length)
            assert mask[r].tolist() == [1] * n + [0] * (context_length - n), repr(text)
            assert decode(ids[r, :n], skip_special=False) == ref._tokenizer.decode(expected[r, :n].tolist())


def test_reference_file_is_what_open_clip_gives():
    ref = _open_clip_tokenizer()
    expected = ref.tokenize([c["text"] for c in CASES], context_length=77)
    for row, case in zip(expected.tolist(), CASES, strict=True):
        assert row[: len(case["ids"])] == case["ids"] and not any(row[len(case["ids"]) :])


def test_letter_and_digit_classes_match_regex_on_every_assigned_character():
    regex = pytest.importorskip("regex", reason="the reference character classes come from regex")
    letter, digit = regex.compile(r"\p{L}"), regex.compile(r"\p{N}")
    for code in range(0x110000):
        char = chr(code)
        # Characters unassigned in this Python's Unicode tables are the documented difference.
        if unicodedata.category(char) == "Cn" or 0xD800 <= code < 0xE000:
            continue
        kind = _char_class(char)
        assert (kind == _LETTER) == bool(letter.match(char)), hex(code)
        assert (kind == _DIGIT) == bool(digit.match(char)), hex(code)
