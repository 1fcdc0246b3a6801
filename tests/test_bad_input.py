"""Bad input gets a clear message and changes nothing; the code has no unsafe loaders."""

import errno
import re
from pathlib import Path

import pytest

from conceptkd_core import explorer as explorer_mod
from conceptkd_core.datasets import load_folder
from conceptkd_core.extract.pipeline import ExtractionError, extract
from conceptkd_core.extract.teachers import LogitsFileTeacher, TeacherError
from conceptkd_core.vocabulary import MAX_WORD_LENGTH, VocabularyError, load_vocabulary, parse_vocabulary
from conceptkd_tools.demo import DEMO_DIR

from tiny_clip import write_scene

ROOT = Path(__file__).resolve().parent.parent


def test_vocabulary_normalisation_and_limits(tmp_path):
    words = parse_vocabulary("Dog\n\n  dog \nhot  dog\nCafé\n狗\n\n")
    assert words == ["dog", "hot dog", "café", "狗"]  # duplicates and blanks dropped, non-ASCII kept
    with pytest.raises(VocabularyError, match=f"the limit is {MAX_WORD_LENGTH}"):
        parse_vocabulary("x" * (MAX_WORD_LENGTH + 1))
    with pytest.raises(VocabularyError, match="no words"):
        parse_vocabulary("\n \n")
    (tmp_path / "v.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(VocabularyError, match="not UTF-8"):
        load_vocabulary(tmp_path / "v.txt")
    with pytest.raises(VocabularyError, match="not found"):
        load_vocabulary(tmp_path / "missing.txt")


@pytest.fixture
def small_set(tmp_path):
    (tmp_path / "im").mkdir()
    for i in range(3):
        write_scene(tmp_path / "im" / f"{i}.png", i)
    (tmp_path / "labels.csv").write_text("image,labels\n0.png,cat\n1.png,dog\n2.png,cat\n")
    return load_folder(tmp_path / "im", tmp_path / "labels.csv")


def test_teacher_classes_must_match_the_labels(small_set, tmp_path):
    csv = tmp_path / "logits.csv"
    csv.write_text("image_id,cat,dog,cow\n0.png,1,2,3\n1.png,1,2,3\n2.png,1,2,3\n")
    teacher = LogitsFileTeacher(csv, ("cat", "dog", "cow"))
    with pytest.raises(
        ExtractionError, match="teacher's classes \\['cat', 'dog', 'cow'\\] differ from the labels' classes"
    ):
        extract(small_set, tmp_path / "ws", None, teacher, ["fur"])
    assert not (tmp_path / "ws").exists()


def test_logits_for_unknown_or_missing_images(small_set, tmp_path):
    csv = tmp_path / "logits.csv"
    csv.write_text("image_id,cat,dog\n0.png,1,2\nelsewhere.png,1,2\n")
    teacher = LogitsFileTeacher(csv, small_set.classes)
    with pytest.raises(TeacherError, match="no logits for 2 images, e.g. \\['1.png', '2.png'\\]"):
        extract(small_set, tmp_path / "ws", None, teacher, ["fur"])
    assert not (tmp_path / "ws").exists()


def test_read_only_or_full_disk_still_browses(tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "demo"
    shutil.copytree(DEMO_DIR, copy, ignore=shutil.ignore_patterns("sessions", "images"))
    (copy / "workspace" / "students.json").unlink()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("conceptkd_core.store.side_files.atomic_write_json", full)
    explorer = explorer_mod.open_explorer(copy / "workspace")  # students fitted, saving them fails quietly
    assert not (copy / "workspace" / "students.json").exists()
    session = explorer_mod.new_session(explorer)
    monkeypatch.setattr("conceptkd_core.students.session_file.atomic_write_text", full)
    session.set_weight(0, 0, 0.5)
    assert session.bank.coef_[0, 0] == 0.5
    assert "No space left on device" in session.autosave_error
    assert not list((copy / "workspace").glob("sessions/*.json"))


def test_no_unsafe_loaders_in_the_code():
    sources = {
        p: p.read_text()
        for folder in ("conceptkd_core", "conceptkd_tools", "views")
        for p in (ROOT / folder).rglob("*.py")
    }
    for path, text in sources.items():
        assert not re.search(r"^\s*import pickle|\bpickle\.load|(?<![.\w])eval\(|(?<![.\w])exec\(", text, re.M), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=True" not in call, (path, call)
