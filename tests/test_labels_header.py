"""A labels CSV whose first row leaves a column unnamed or names one twice is refused, one line
naming the column: pandas read them as classes 'Unnamed: 1' and 'cat.1', and Setup made a
workspace with those classes without a word."""

import pytest

from conceptkd_core.datasets import DatasetError, load_folder

from tiny_clip import write_scene


@pytest.mark.parametrize(
    "header, message",
    [
        ("image,,cat", "column 2 has no name; expected a name in the first row for every column"),
        ("image, cat ,dog,cat", "column 'cat' appears more than once; expected each column once"),
    ],
)
def test_a_header_with_a_blank_or_repeated_column_is_refused(tmp_path, header, message):
    (tmp_path / "im").mkdir()
    write_scene(tmp_path / "im" / "a.png", 0)
    width = len(header.split(","))
    (tmp_path / "labels.csv").write_text(f"{header}\na.png{',1' * (width - 1)}\n")
    with pytest.raises(DatasetError, match=message):
        load_folder(tmp_path / "im", tmp_path / "labels.csv")


def test_a_header_with_a_byte_order_mark_reads(tmp_path):
    (tmp_path / "im").mkdir()
    write_scene(tmp_path / "im" / "a.png", 0)
    (tmp_path / "labels.csv").write_bytes("\ufeffimage,cat,dog\na.png,1,0\n".encode())
    assert load_folder(tmp_path / "im", tmp_path / "labels.csv").classes == ("cat", "dog")


def test_a_class_name_given_twice_is_named(tmp_path):
    """Setup's 'Class names' box: it said "class names repeat: ['a']", not what is expected."""
    from conceptkd_core.datasets import load_unlabelled

    (tmp_path / "im").mkdir()
    write_scene(tmp_path / "im" / "a.png", 0)
    with pytest.raises(
        DatasetError, match="^class name 'cat' is given twice; expected each class once, in the teacher's order$"
    ):
        load_unlabelled(tmp_path / "im", ["cat", "dog", " cat "])
