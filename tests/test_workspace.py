import json
import os

import numpy as np
import pytest

from conceptkd_core.store import workspace as wsmod
from conceptkd_core.store.workspace import WorkspaceError, load_workspace, safe_join, write_workspace

CLASSES = ["cat", "dog", "car"]
VOCAB = ["fur", "wheel", "grass", "sky", "road"]


def make_args(n=6, **overrides):
    rng = np.random.default_rng(0)
    args = dict(
        image_ids=[f"img{i}" for i in range(n)],
        paths=[f"images/{i}.png" for i in range(n)],
        splits=["train"] * (n - 2) + ["test"] * 2,
        labels=rng.integers(0, 2, (n, 3)),
        classes=CLASSES,
        vocabulary=VOCAB,
        concept_matrix=rng.random((n, 5)).astype(np.float32),
        teacher_logits=rng.normal(size=(n, 3)),
        model={"name": "tiny", "pretrained": None},
        teacher={"kind": "logits-file"},
    )
    args.update(overrides)
    return args


def test_round_trip(tmp_path):
    args = make_args()
    ws = write_workspace(tmp_path / "ws", **args)
    again = load_workspace(tmp_path / "ws")
    assert again.classes == tuple(CLASSES) and again.vocabulary == tuple(VOCAB)
    assert again.n_images == 6 and again.n_concepts == 5 and again.n_classes == 3
    np.testing.assert_array_equal(again.labels, args["labels"])
    np.testing.assert_allclose(again.concept_matrix, args["concept_matrix"], atol=1e-3)  # float16 on disk
    assert isinstance(again.concept_matrix, np.memmap)
    np.testing.assert_allclose(again.teacher_logits, args["teacher_logits"], rtol=1e-6)
    assert list(again.image_ids) == args["image_ids"] and again.row_of("img3") == 3
    assert again.split_mask("test").sum() == 2
    assert ws.workspace_id == again.workspace_id
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "ws").iterdir())
    with pytest.raises(ValueError):
        again.teacher_logits[0, 0] = 1.0  # read-only


@pytest.mark.parametrize(
    "override, message",
    [
        (
            dict(concept_matrix=np.zeros((6, 4), np.float32)),
            r"concepts.npy: concept matrix has shape \(6, 4\); expected \(6, 5\)",
        ),
        (
            dict(teacher_logits=np.zeros((6, 2))),
            r"teacher_logits.npy: teacher logits have shape \(6, 2\); expected \(6, 3\)",
        ),
        (
            dict(labels=np.full((6, 3), 2)),
            r"manifest.parquet: labels must be 0 or 1; image 'img0' has 2 for class 'cat'",
        ),
        (dict(image_ids=["a", "a", "b", "c", "d", "e"]), r"duplicate image ids, e.g. \['a'\]"),
        (
            dict(teacher_logits=np.where(np.eye(6, 3) > 0, np.nan, 0.0)),
            r"teacher logits contain NaN or inf \(e.g. image 'img0', 3 images",
        ),
        (dict(concept_matrix=np.full((6, 5), np.inf, np.float32)), r"concept scores contain NaN or inf"),
        (dict(vocabulary=["fur", "Fur", "x", "y", "z"]), r"vocabulary must be normalised"),
        (dict(classes=["cat", "cat", "car"]), r"duplicate class names"),
    ],
)
def test_write_refuses_bad_input(tmp_path, override, message):
    with pytest.raises(WorkspaceError, match=message):
        write_workspace(tmp_path / "ws", **make_args(**override))
    assert not (tmp_path / "ws" / "conceptkd.json").exists()


@pytest.fixture
def ws_dir(tmp_path):
    write_workspace(tmp_path / "ws", **make_args())
    return tmp_path / "ws"


def edit_meta(ws_dir, **changes):
    meta = json.loads((ws_dir / "conceptkd.json").read_text())
    meta.update(changes)
    (ws_dir / "conceptkd.json").write_text(json.dumps(meta))


def test_unknown_schema_version(ws_dir):
    edit_meta(ws_dir, schema_version=99)
    with pytest.raises(WorkspaceError, match="conceptkd.json: unknown schema version 99; this ConceptKD reads 1"):
        load_workspace(ws_dir)


def test_missing_files(ws_dir, tmp_path):
    (ws_dir / "teacher_logits.npy").unlink()
    with pytest.raises(WorkspaceError, match="teacher_logits.npy: missing file"):
        load_workspace(ws_dir)
    with pytest.raises(WorkspaceError, match="not a ConceptKD workspace"):
        load_workspace(tmp_path)
    with pytest.raises(WorkspaceError, match="does not exist"):
        load_workspace(tmp_path / "nope")


def test_vocabulary_mismatch(ws_dir):
    (ws_dir / "vocabulary.txt").write_text("fur\nwheel\ngrass\nsky\n")
    with pytest.raises(WorkspaceError, match="vocabulary.txt"):
        load_workspace(ws_dir, verify="size")  # even without checksums the count is checked


def test_changed_or_truncated_file_is_detected(ws_dir):
    path = ws_dir / "concepts.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WorkspaceError, match="concepts.npy: file content does not match the checksum"):
        load_workspace(ws_dir)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(WorkspaceError, match="concepts.npy: file is .* bytes but the workspace metadata records"):
        load_workspace(ws_dir)


def test_nan_written_behind_the_metadata_is_caught(ws_dir):
    arr = np.load(ws_dir / "teacher_logits.npy")
    arr[1, 1] = np.nan
    np.save(ws_dir / "teacher_logits.npy", arr)  # same size, so only the full checks can see it
    with pytest.raises(WorkspaceError, match="teacher logits contain NaN or inf"):
        load_workspace(ws_dir, verify="size")


def test_pickled_arrays_are_refused(ws_dir):
    np.save(ws_dir / "teacher_logits.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    meta = json.loads((ws_dir / "conceptkd.json").read_text())
    meta["files"]["teacher_logits.npy"]["bytes"] = (ws_dir / "teacher_logits.npy").stat().st_size
    (ws_dir / "conceptkd.json").write_text(json.dumps(meta))
    with pytest.raises(WorkspaceError, match="teacher_logits.npy: not a plain numeric .npy array"):
        load_workspace(ws_dir, verify="size")


def test_crash_during_rewrite_leaves_a_loadable_workspace(ws_dir, monkeypatch):
    before = load_workspace(ws_dir)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(wsmod, "_manifest_bytes", boom)  # fail after the arrays were replaced
    with pytest.raises(OSError):
        write_workspace(ws_dir, **make_args(concept_matrix=np.ones((6, 5), np.float32)))
    monkeypatch.undo()
    # The metadata still describes the old files, so the half-rewritten state is reported, not loaded.
    with pytest.raises(WorkspaceError, match="checksum|bytes"):
        load_workspace(ws_dir)
    assert before.workspace_id


def test_safe_join_refuses_escapes(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("x")
    os.symlink(tmp_path / "secret.txt", root / "link.png")
    assert safe_join(root, "a/b.png") == (root / "a/b.png").resolve()
    for bad in ("../secret.txt", "/etc/passwd", "link.png"):
        with pytest.raises(WorkspaceError, match="escapes|absolute"):
            safe_join(root, bad)
