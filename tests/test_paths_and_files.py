"""Paths and files: shipped data holds no absolute path, workspace files get the documented mode,
visitors' paths stay inside the allowed folders, vocabularies are normalised."""

import json
import os
import re
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conceptkd_core.store import locations
from conceptkd_core.store.atomic_io import atomic_write_text
from conceptkd_core.store.validation import is_absolute_path
from conceptkd_core.store.workspace import WorkspaceError, load_workspace, write_workspace
from conceptkd_core.vocabulary import read_vocabulary_file, read_vocabulary_text, vocabulary_hash

ROOT = Path(__file__).resolve().parent.parent
# An absolute path of a machine: a POSIX folder where users and builds keep files, or a Windows drive
# (a system path such as /usr/share/fonts, which LICENSES.md names as a source, is no machine's layout).
ABSOLUTE = re.compile(rb"(?<![\w.~])/(?:home|root|tmp|work|Users|mnt|var|srv|data|private)/|\b[A-Za-z]:\\\\")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_shipped_data_holds_no_absolute_path():
    files = [p for p in (ROOT / "data").rglob("*") if p.is_file()]
    assert len(files) > 800
    for path in files:
        blobs = [path.read_bytes()]
        if zipfile.is_zipfile(path):  # .npz, TorchScript: look inside the (maybe compressed) members too
            with zipfile.ZipFile(path) as archive:
                blobs += [archive.read(name) for name in archive.namelist()]
        for blob in blobs:
            assert not ABSOLUTE.search(blob), (path, ABSOLUTE.search(blob).group())
    for meta in (ROOT / "data").rglob("conceptkd.json"):
        absolute = [s for s in _strings(json.loads(meta.read_text())) if is_absolute_path(s)]
        assert not absolute, (meta, absolute)
    demo = load_workspace(ROOT / "data" / "demo" / "workspace")  # its recorded checksums hold
    assert demo.meta["teacher"]["source"] == "../teacher.pt" and "image_root_absolute" not in demo.meta["extra"]


def small_workspace(root: Path, **changes):
    arguments = dict(
        image_ids=["a", "b"],
        paths=["a.png", "sub/b.png"],
        splits=["train", "test"],
        labels=np.array([[1, 0], [0, 1]]),
        classes=["cat", "dog"],
        vocabulary=["fur", "tail"],
        concept_matrix=np.array([[0.1, 0.2], [0.3, 0.4]], np.float32),
        teacher_logits=np.zeros((2, 2), np.float32),
        model={"name": "m"},
        teacher={"kind": "torch", "source": str(root.parent / "teacher.pt")},
        image_root="../images",
    )
    return write_workspace(root, **(arguments | changes))


def test_metadata_records_paths_relative_and_refuses_absolute_ones(tmp_path):
    ws = small_workspace(tmp_path / "ws")
    assert ws.meta["teacher"]["source"] == "../teacher.pt"  # recorded relative to the workspace
    for changes, says in (
        ({"extra": {"where": "/home/me/images"}}, "extra.where holds the absolute path '/home/me/images'"),
        ({"extra": {"list": ["C:\\data"]}}, "extra.list holds the absolute path"),
        ({"model": {"name": "m", "config": "/opt/m.json"}}, "model.config holds the absolute path"),
        ({"image_root": "/srv/images"}, "image_root '/srv/images' must be a path relative"),
        ({"paths": ["a.png", "../b.png"]}, "'../b.png' (row 1) is not allowed"),
    ):
        with pytest.raises(WorkspaceError, match=re.escape(says)):
            small_workspace(tmp_path / "refused", **changes)
        assert not (tmp_path / "refused" / "conceptkd.json").exists()


def test_workspace_files_get_the_mode_of_the_umask(tmp_path):
    ws = small_workspace(tmp_path / "ws")
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("conceptkd.json", "concepts.npy", "manifest.parquet"):
        assert (ws.root / name).stat().st_mode & 0o777 == 0o666 & ~umask
    code = (
        "import os, sys; from conceptkd_core.store.atomic_io import atomic_write_text; "
        "atomic_write_text(sys.argv[1], 'x'); print(oct(os.stat(sys.argv[1]).st_mode & 0o777))"
    )
    for mask, mode in (("077", "0o600"), ("022", "0o644")):
        out = subprocess.run(
            ["sh", "-c", f'umask {mask} && exec "$0" -c "$1" "$2"', sys.executable, code, str(tmp_path / mask)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == mode


def test_visitors_paths_stay_inside_the_allowed_folders(tmp_path):
    app, outside = tmp_path / "app", tmp_path / "outside"
    (app / "data" / "demo" / "workspace").mkdir(parents=True)
    outside.mkdir()
    (app / "data" / "escape").symlink_to(outside)
    roots = locations.allowed_roots(app, app / "data" / "demo" / "workspace", environ={})
    assert roots == ((app / "data").resolve(), (app / "workspaces").resolve())  # data/demo is inside data/
    assert (
        locations.resolve_typed_path(" data/demo/workspace ", roots) == (app / "data" / "demo" / "workspace").resolve()
    )
    assert locations.resolve_typed_path(str(app / "data" / "demo"), roots) == (app / "data" / "demo").resolve()
    refusals = {
        str(outside): "the folders this server allows: data/, workspaces/",
        "data/escape": "the folders this server allows",  # a symbolic link out of data/
        "data/../../outside": "the folders this server allows",
        "outside": "the folders this server allows",
        "data/\x1b[31m": "control character",
        "d" * 401: "the limit is 400",
        "data/" + "e" * 256: "has 256 characters; the limit is 255",
        "": "no folder given",
    }
    for text, says in refusals.items():
        with pytest.raises(locations.PathRefused, match=re.escape(says)):
            locations.resolve_typed_path(text, roots)
    configured = locations.allowed_roots(app, app, environ={"CONCEPTKD_WORKSPACE_ROOTS": f"{outside}{os.pathsep}"})
    assert (
        configured == (outside.resolve(),) and locations.resolve_typed_path("outside", configured) == outside.resolve()
    )
    assert locations.display_path(app / "data" / "demo" / "workspace", roots) == "data/demo/workspace"
    message = f"{app / 'data' / 'demo' / 'x.json'}: bad; {app}/README.md"
    assert locations.without_server_paths(message, roots, app) == "data/demo/x.json: bad; ./README.md"


def test_vocabulary_normalisation_and_what_it_reports(tmp_path):
    decomposed = unicodedata.normalize("NFD", "Café")
    parsed = read_vocabulary_text(f"\ufeffdog\n{decomposed}\n  café \nDOG\n\nhot\u00a0 dog\n")
    assert parsed.words == ["dog", "café", "hot dog"]  # BOM, NFC, case, whitespace
    assert parsed.duplicates == ["café", "dog"]
    (tmp_path / "v.txt").write_bytes("\ufeffdog\ncat\n".encode())
    assert read_vocabulary_file(tmp_path / "v.txt").words == ["dog", "cat"]
    assert vocabulary_hash(parsed.words) == vocabulary_hash(read_vocabulary_text("dog\ncafé\nhot dog").words)
    atomic_write_text(tmp_path / "w.txt", "پ\u200cس\n")  # a zero-width non-joiner is part of Persian words
    assert read_vocabulary_file(tmp_path / "w.txt").words == ["پ\u200cس"]
