"""Write tests/data/clip_tokens.json: open_clip's token ids for the tokenizer test prompts.

Run with a Python that has open_clip_torch, ftfy and regex installed (open_clip's own dependencies):

    python scripts/clip_token_reference.py [OUT]

Only open_clip's `tokenizer.py` is loaded, not the package, so a torchvision that does not import beside
the installed torch does not matter. tests/test_tokenizer.py compares `videozoo`'s tokenizer with this
file in every run, and with open_clip itself where it is installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "clip_tokens.json"

# Each prompt tests a rule of the tokenizer: cleaning, splitting, merging, markers or truncation.
PROMPTS = [
    # The X-CLIP fixture's prompts.
    "a video of a person playing guitar",
    "a video of a dog running",
    "a video of someone cooking",
    # Case, contractions, punctuation runs.
    "A ViDeO oF SoMeOnE CoOkInG",
    "WHAT'S UP? it's 3:45pm, isn't it... they've, we'll, I'd, I'm, you're",
    "McDonald's iPhone O'Neill rock'n'roll dogs' toys",
    "hello, world! (test) [brackets] {braces} <angle> @user #hashtag $100 50% a&b c*d e+f g=h",
    '~tilde `back` ^caret |pipe \\backslash /slash ;semi: "quotes" -- em—dash … ellipsis',
    "!!! ??? ... ,,, --- ___ !?!? :-) ;-( <3",
    # Numbers: one digit per piece, whatever the script.
    "1234567 people, 3.14159, 1,000,000 and 2nd place on 2024-12-07",
    "٣ أشخاص و ١٢٣ Ⅻ ½ ² ३४५ ๕",
    # Accents, composed and decomposed (NFC).
    "café crème brûlée à la mode",
    "naïve façade São Paulo Ångström Øresund Łódź Straße İstanbul",
    "cafe\u0301 nai\u0308ve",
    # Non-Latin scripts.
    "一个人在弹吉他",
    "ギターを弾く人 と ﾊﾝﾊﾞｰｶﾞｰ",
    "기타를 치는 사람",
    "شخص يعزف على الغيتار",
    "Человек играет на гитаре",
    "एक व्यक्ति गिटार बजा रहा है",
    "Ο άνθρωπος παίζει κιθάρα",
    "אדם מנגן בגיטרה",
    "คนเล่นกีตาร์",
    # Emoji: multi-byte pieces, joiners, modifiers, flags.
    "dog 🐶 running 🏃‍♂️ fast!!! 👍🏽",
    "🇫🇷 flag ❤️ love 🤖🤖🤖",
    "!🙂 a",
    # Whitespace of every kind collapses to one space.
    "   leading and trailing   ",
    "tabs\tand\nnewlines\r\n and\u00a0nbsp\u3000ideographic\u2028line\u2029para\x85next",
    # HTML entities: ftfy's pass (only on lines without '<') plus CLIP's two html.unescape calls.
    "fish &amp; chips",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&quot;quoted&quot; &#39;apos&#39; &#x263A; &eacute; &EACUTE; caf&eacute",
    "&amp;amp;amp;amp; four times",
    "a <tag> &amp;amp;amp; b",
    "first line &amp;amp;amp;\nsecond <line> &amp;amp;amp;\nthird &amp;amp;amp;",
    # ftfy's fixes: curly quotes, ligatures, full width, controls, terminal escapes, C1 controls.
    "it’s “quoted” ‘single’ ʼmodifier",
    "ﬁsh ﬂying ĳs ǆ",
    "ＬＯＵＤ　ＮＯＩＳＥ！ １２３",
    "bell\x07char zero\u200bwidth bom\ufeffhere",
    "esc \x1b[31mred\x1b[0m done",
    "\x93smart\x94 quotes \x85 and \x81",
    # Markers written in the text are markers (lower-casing comes first); OpenAI's spelling is not.
    "<start_of_text> hello <END_OF_TEXT>",
    "<|startoftext|> hi <|endoftext|>",
    "it'ſ long s",
    # Empty, blank and one-character texts.
    "",
    "   ",
    "!",
    "a",
    # Context boundary: 75 words fit exactly, 76 are cut, long prose is cut keeping the end marker.
    "a " * 75,
    "a " * 76,
    "a video of " + "someone juggling flaming torches while riding a unicycle across a tightrope, " * 8,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]


def load_open_clip_tokenizer():
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip_torch is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("open_clip_tokenizer_only", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    tok = load_open_clip_tokenizer()
    ids = tok.tokenize(PROMPTS, context_length=77)
    cases = []
    for text, row in zip(PROMPTS, ids.tolist(), strict=True):
        # The tokens before the padding: start, the text's tokens, end, at most the context. (Not up to
        # the first end id: a text may write the marker itself.)
        length = min(len(tok._tokenizer.encode(text)) + 2, 77)
        cases.append({"text": text, "ids": row[:length]})
    versions = {name: importlib.metadata.version(name) for name in ("open_clip_torch", "ftfy", "regex")}
    reference = ", ".join(f"{k} {v}" for k, v in versions.items())
    # One case a line, ASCII-escaped so that every control character and surrogate survives intact.
    lines = [json.dumps(case, ensure_ascii=True) for case in cases]
    body = ",\n  ".join(lines)
    header = json.dumps(f"open_clip.tokenize(texts, context_length=77) with {reference}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f'{{\n "reference": {header},\n "cases": [\n  {body}\n ]\n}}\n')
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
