"""Regenerates the model tables of README.md and docs/models.md from the registry, and the shared-flag
table of docs/cli.md from the command line's parsers.

python scripts/update_docs.py          # rewrite the tables
python scripts/update_docs.py --check  # exit 1 if a table is out of date
"""

import sys
from pathlib import Path

from videozoo.cli.flags import flags_markdown
from videozoo.models.table import flops_notes, format_table, model_rows

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- models:begin -->", "<!-- models:end -->"


def table() -> str:
    notes = "\n".join(f"- {n}" for n in flops_notes())
    return (
        format_table(model_rows(), markdown=True)
        + "\n\nGFLOPs: multiply-adds (one multiply-add = one FLOP, the published tables' convention) of the "
        "convolutions and matrix products of one view at the eval crop, computed from the built model; "
        "`pub. GFLOPs`, top-1 and top-5 (Kinetics-400 unless another dataset is named, with the listed test views) "
        "as published with the weights. "
        "`weights licence`: the terms each publisher gives the weights under, from its own page (an SPDX id, "
        "linked to its text, or the terms' name linked to the publisher's page); docs/licences.md says more. "
        "Where the computed and published GFLOPs differ:\n\n" + notes
    )


FLAGS_BEGIN, FLAGS_END = "<!-- flags:begin -->", "<!-- flags:end -->"


def main() -> int:
    check = "--check" in sys.argv
    fresh = table()
    flags = flags_markdown()
    stale = []
    targets = [
        (ROOT / "README.md", BEGIN, END, fresh),
        (ROOT / "docs" / "models.md", BEGIN, END, fresh),
        (ROOT / "docs" / "cli.md", FLAGS_BEGIN, FLAGS_END, flags),
    ]
    for path, begin, end, body in targets:
        text = path.read_text()
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = f"{head}{begin}\n{body}\n{end}{tail}"
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    if check and stale:
        print("out of date: " + ", ".join(map(str, stale)) + " (run python scripts/update_docs.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
