"""Dataset lists that are awkward but valid are read right; broken ones get one message naming the line."""

from __future__ import annotations

import pytest

import videozoo
from videozoo.data.datasets import DatasetRowWarning, DatasetSpecError, load_video_list

K400 = list(videozoo.kinetics400_classes())


def _touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


# (files that exist, list file name, its content, classes, expected [(relative path, label name)])
READABLE = [
    (
        "spaces in path and label",
        ["my videos/a b.mp4"],
        "list.txt",
        "my videos/a b.mp4 air drumming\n",
        K400,
        [("my videos/a b.mp4", "air drumming")],
    ),
    (
        "label with spaces, path without",
        ["x.mp4"],
        "list.txt",
        "x.mp4 air drumming\n",
        K400,
        [("x.mp4", "air drumming")],
    ),
    (
        "tab separated",
        ["my videos/a b.mp4"],
        "list.tsv",
        "path\tlabel\nmy videos/a b.mp4\tair drumming\n",
        K400,
        [("my videos/a b.mp4", "air drumming")],
    ),
    (
        "CSV with a header and quotes",
        ["a, b.mp4", "c.mp4"],
        "list.csv",
        'video,label\n"a, b.mp4","air drumming"\r\nc.mp4,zumba\r\n',
        K400,
        [("a, b.mp4", "air drumming"), ("c.mp4", "zumba")],
    ),
    ("CRLF and a byte-order mark", ["v.mp4"], "list.txt", "\ufeffv.mp4 abseiling\r\n", K400, [("v.mp4", "abseiling")]),
    (
        "missing video, one known reading",
        [],
        "list.txt",
        "gone.mp4 air drumming\n",
        K400,
        [("gone.mp4", "air drumming")],
    ),
    (
        "no class list: labels learnt from the list",
        ["a b.mp4", "c.mp4", "d e.mp4"],
        "list.txt",
        "a b.mp4 air drumming\nc.mp4 air drumming\nd e.mp4 bowling\n",
        None,
        [("a b.mp4", "air drumming"), ("c.mp4", "air drumming"), ("d e.mp4", "bowling")],
    ),
    ("unlabelled path with spaces", ["a b.mp4"], "list.txt", "a b.mp4\n", K400, [("a b.mp4", None)]),
]


@pytest.mark.parametrize("files, name, text, classes, want", [c[1:] for c in READABLE], ids=[c[0] for c in READABLE])
def test_awkward_lists_are_read_right(tmp_path, files, name, text, classes, want):
    _touch(tmp_path, *files)
    (tmp_path / name).write_bytes(text.encode())
    vl = load_video_list(tmp_path / name, classes=classes)
    assert [(i.path, i.label_name) for i in vl.items] == [(str(tmp_path / p), lab) for p, lab in want]
    for item in vl.items:
        if item.label_name is not None:
            assert vl.classes[item.label] in (item.label_name, item.label_name.replace(" ", "_"))


def test_data_root_decides_the_reading(tmp_path):
    _touch(tmp_path / "videos", "a b.mp4")
    (tmp_path / "list.txt").write_text("a b.mp4 c\n")
    vl = load_video_list(tmp_path / "list.txt", classes=["b.mp4 c", "c"], root=str(tmp_path / "videos"))
    assert vl.items[0].path == str(tmp_path / "videos" / "a b.mp4") and vl.items[0].label_name == "c"


# (files, content as bytes, classes, words the one error holds)
BROKEN = [
    ("ambiguous", ["a", "a b"], b"a c\na b c\n", ["b c", "c"], ["list.txt", "line 2", "ambiguous", "tab"]),
    ("no reading fits", [], b"a.mp4 zumba\nnothing fits this line\n", K400, ["line 2", "no reading"]),
    ("unknown label", ["a.mp4"], b"a.mp4 not_a_class\n", K400, ["line 1", "not_a_class"]),
    ("three tab fields", [], b"a.mp4\tzumba\textra\n", K400, ["line 1", "3 tab-separated fields"]),
    ("Latin-1", [], b"a.mp4 zumba\nb\xe9.mp4 zumba\n", K400, ["list.txt", "not UTF-8", "byte offset 13", "0xe9"]),
    ("UTF-16", [], "a.mp4 zumba\n".encode("utf-16"), K400, ["list.txt", "UTF-16"]),
]


@pytest.mark.parametrize("files, data, classes, words", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_lists_get_one_message(tmp_path, files, data, classes, words):
    _touch(tmp_path, *files)
    (tmp_path / "list.txt").write_bytes(data)
    with pytest.raises(DatasetSpecError) as e:
        load_video_list(tmp_path / "list.txt", classes=classes)
    for word in words:
        assert word in str(e.value)


def test_kinetics_csv_quirks_keep_the_good_rows_and_name_the_bad(tmp_path):
    text = (
        "\ufefflabel,youtube_id,time_start,time_end,split,extra\r\n"
        '"air drumming",abc,12,22,val,x\r\n'  # quoted, an extra column
        "abseiling,short\r\n"  # ragged: too few fields
        "abseiling,def,soon,10,val\r\n"  # not a number
        "abseiling,ghi,0,inf,val\r\n"  # infinite
        "abseiling,jkl,nan,10,val\r\n"  # NaN
        "zumba,mno,5.0,15.0,val,y,z\r\n"  # ragged: too many fields
        "\r\n"
    )
    (tmp_path / "val.csv").write_bytes(text.encode())
    with pytest.warns(DatasetRowWarning) as caught:
        vl = load_video_list(tmp_path / "val.csv", classes=K400)
    assert [i.path for i in vl.items] == [
        str(tmp_path / "abc_000012_000022.mp4"),
        str(tmp_path / "mno_000005_000015.mp4"),
    ]
    assert [i.label for i in vl.items] == [1, 399]
    message = str(caught[0].message)
    for words in (
        "val.csv",
        "4 row(s) left out",
        "line 3: no time_start (a row of 2 of the header's 6 fields)",
        "line 4: time_start 'soon' is not a number",
        "line 5: time_end 'inf'",
        "line 6: time_start 'nan'",
    ):
        assert words in message
    assert len(vl.skipped_rows) == 4


def test_kinetics_csv_with_no_usable_row_is_an_error(tmp_path):
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,a,x,y,val\n")
    with (
        pytest.raises(DatasetSpecError, match=r"(?s)holds no videos.*line 2: time_start 'x'"),
        pytest.warns(DatasetRowWarning),
    ):
        load_video_list(tmp_path / "val.csv", classes=K400)


def test_csv_without_a_known_header_is_an_error(tmp_path):
    (tmp_path / "x.csv").write_text("a.mp4,zumba\n")
    with pytest.raises(DatasetSpecError, match="x.csv: the first line is not a header"):
        load_video_list(tmp_path / "x.csv", classes=K400)
