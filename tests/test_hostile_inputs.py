"""Hostile inputs, table-driven, at every entry point: the CLI, the workspace's files, imported
tuning logs and the app's pages. For each: no traceback, one message naming the problem, and
nothing written or changed (a damaged cache is the exception: it is reported, then rebuilt).

The README's reliability table counts the cases of each table below.
"""

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core import cli
from conceptkd_core.datasets import load_folder
from conceptkd_core.explorer import import_session, new_session, open_explorer, saved_sessions
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import PARTIAL_DIR, extract
from conceptkd_core.extract.teachers import ClipZeroShotTeacher
from conceptkd_core.markdown_text import as_read, literal
from conceptkd_core.store.atomic_io import sha256_file
from conceptkd_core.store.side_files import GRAM_FIELDS, _gram_checksum, segment_row
from conceptkd_core.store.strict_json import canonical_sha256
from conceptkd_core.store.workspace import WorkspaceError
from conceptkd_core.students.events import TuningError
from conceptkd_core.vocabulary import load_vocabulary

from demo_subset import copy_demo_subset, make_demo_subset
from tiny_clip import make_tiny_checkpoint, write_labelled_scenes

ROOT = Path(__file__).resolve().parent.parent
VOCABULARY = ROOT / "conceptkd_core" / "vocabularies" / "davis2017.txt"


def snapshot(*folders: Path) -> dict:
    """Every file under ``folders`` with its size and modification time: what "nothing changed" compares."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for folder in folders
        if folder.exists()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ============================================================================= the CLI
@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Inputs of a small extraction (6 scenes, a tiny CLIP), a finished workspace made from them
    with 8 segments per image, and an unfinished one stopped after its first batch."""
    base = tmp_path_factory.mktemp("cli")
    config, weights = make_tiny_checkpoint(base / "model")
    labels = write_labelled_scenes(base, {f"im{i}": ("all", "cat" if i % 2 else "dog") for i in range(6)})
    shutil.copy(VOCABULARY, base / "vocabulary.txt")
    (base / "a-file.txt").write_text("not a folder\n")
    (base / "a-folder").mkdir()
    finish = EXTRACT.replace("{c}/ws", "{k}/finished").format(k=base) + " --segments 8"
    assert cli.main(shlex.split(finish)) == 0
    images = load_folder(base / "images", labels)
    clip = load_clip(str(config), checkpoint=weights)
    teacher = ClipZeroShotTeacher(clip, images.classes)
    vocabulary = load_vocabulary(VOCABULARY)

    def stop(progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(images, base / "unfinished", clip, teacher, vocabulary, batch_size=2, n_segments=8, progress=stop)
    assert (base / "unfinished" / PARTIAL_DIR / "plan.json").is_file()
    return base


@dataclass(frozen=True)
class CliCase:
    argv: str  # shell words; {extract} is a complete extract command, {k} the kit folder, {c} the case folder
    status: int  # 2: usage error, 1: failure while running
    says: tuple[str, ...]  # what the one line must name
    files: tuple[tuple[str, bytes], ...] = ()  # input files written into the case folder first


def case(argv: str, status: int, *says: str, **files: bytes) -> CliCase:
    return CliCase(argv, status, says, tuple((name.replace("__", "."), data) for name, data in files.items()))


EXTRACT = (
    "extract --images {k}/images --labels {k}/labels.csv --model {k}/model/tiny-vit-test.json "
    "--checkpoint {k}/model/tiny-vit-test.safetensors --vocabulary {k}/vocabulary.txt --out {c}/ws --batch-size 2"
)
SCENES = "image,image_id,split,labels\n" + "".join(
    f"{i}.png,im{i},all,{'dog' if i % 2 == 0 else 'cat'}\n" for i in range(6)
)
LOGITS = "image_id,cat,dog\n" + "".join(f"im{i},0.1,0.2\n" for i in range(6))

CLI_CASES = [
    # usage errors: refused before anything runs
    case("", 2, "arguments are required: {extract,gram,student,bench,demo}"),
    case("bogus", 2, "invalid choice: 'bogus'"),
    case("extract --images {k}/images", 2, "required: --out"),
    case("{extract} --segments 0", 2, "--segments", "'0'", "1 to 64"),
    case("{extract} --segments 65", 2, "'65'", "1 to 64"),
    case("{extract} --segments many", 2, "'many'", "whole number"),
    case("{extract} --batch-size -3", 2, "--batch-size", "'-3'", "1 to 4,096"),
    case("{extract} --batch-size 0", 2, "'0'", "1 to 4,096"),
    case("{extract} --limit 0", 2, "--limit", "'0'", ">= 1"),
    case("{extract} --limit -1", 2, "--limit", "'-1'"),
    case("{extract} --out ''", 2, "--out", "empty path"),
    case("{extract} --out {k}/a-file.txt", 2, "a-file.txt", "is a file; expected a folder"),
    case("{extract} --out {k}/a-file.txt/ws", 2, "a-file.txt is a file, so nothing can be created below it"),
    case("{extract} --vocabulary {k}/a-folder", 2, "--vocabulary", "a-folder", "is a folder; expected a file"),
    case("{extract} --vocabulary {k}/missing.txt", 2, "missing.txt", "no such file"),
    case("{extract} --labels {k}/a-folder", 2, "--labels", "is a folder; expected a file"),
    case("{extract} --labels {k}/missing.csv", 2, "missing.csv", "no such file"),
    case("{extract} --images {k}/no-such-folder", 2, "no-such-folder", "no such folder"),
    case("{extract} --images {k}/a-file.txt", 2, "a-file.txt", "is a file; expected a folder"),
    case("{extract} --device bogus", 2, "--device", "'bogus'", "cpu, cuda, cuda:N or mps"),
    case("{extract} --device cuda:99", 2, "'cuda:99'", "allowed here: cpu"),
    case("{extract} --teacher teacher.txt", 2, "--teacher", "teacher.txt", "clip-zero-shot, a TorchScript file"),
    case("{extract} --teacher {k}/missing.pt", 2, "missing.pt", "no such file"),
    case("{extract} --checkpoint {k}/missing.safetensors", 2, "--checkpoint", "no such file"),
    case("{extract} --pretrained openai", 2, "--pretrained", "not allowed with argument --checkpoint"),
    case("{extract} --model 'bad name!'", 2, "--model", "'bad name!'", "open_clip model name"),
    case("{extract} --model {k}/missing.json", 2, "missing.json", "no such file"),
    case("{extract} --cpus-per-actor 0", 2, "--cpus-per-actor", "'0'", "> 0"),
    case("{extract} --gpus-per-actor -1", 2, "--gpus-per-actor", "'-1'", ">= 0"),
    case("{extract} --gpus-per-actor nan", 2, "'nan'", ">= 0"),
    case("{extract} --actors 0", 2, "--actors", "'0'"),
    case("{extract} --splits ,,", 2, "--splits", "comma-separated"),
    case("{extract} --address 'two words'", 2, "--address", "'two words'", "Ray address"),
    case("{extract} --engine spark", 2, "--engine", "'spark'", "choose from"),
    case("{extract} --frobnicate", 2, "unrecognized arguments: --frobnicate"),
    case("gram {k}/no-such-folder", 2, "no-such-folder", "no such folder"),
    case("gram {k}/a-file.txt", 2, "a-file.txt", "is a file; expected a folder"),
    case("bench", 2, "required: benchmark"),
    case("bench refit --n-images -5", 2, "--n-images", "'-5'", "10 to 2,000,000"),
    case("bench refit --alpha nan", 2, "--alpha", "'nan'", ">= 0"),
    case("bench refit --alpha inf", 2, "'inf'", "<= 1000"),
    case("bench refit --n-concepts 100000", 2, "--n-concepts", "'100000'", "2 to 5,000"),
    case("bench refit --moves 0", 2, "--moves", "'0'"),
    case("bench scale --sizes 10,abc", 2, "--sizes", "'10,abc'", "comma-separated"),
    case("bench scale --sizes 5", 2, "'5'", "100 to 10,000,000"),
    case("bench scale --plot {k}/a-folder", 2, "--plot", "is a folder; expected a file name"),
    case("bench scale --folder {k}/a-file.txt", 2, "--folder", "is a file"),
    case("bench app --workspace {k}/no-such-folder", 2, "--workspace", "no such folder"),
    case("bench app --moves 0", 2, "--moves", "'0'"),
    case("bench extract --batch-size 0", 2, "--batch-size", "'0'"),
    case("bench extract --device tpu", 2, "--device", "'tpu'"),
    case("bench extract --model NotAModel", 2, "--model", "'NotAModel'", "not an open_clip model name"),
    case("demo build --clip-scenes 0", 2, "--clip-scenes", "'0'", "from 1 to"),
    case("demo build --val -1", 2, "--val", "'-1'"),
    case("demo build --single 600", 2, "--single", "600", "<= --test"),
    case("demo build --out {k}/a-file.txt", 2, "--out", "is a file"),
    case("demo extract --out {k}/a-folder", 2, "--out", "is not a demo folder", "labels.csv"),
    case("demo eval --demo {k}/no-such-folder", 2, "--demo", "no such folder"),
    case("demo eval --demo {k}/a-folder", 2, "--demo", "is not a demo folder", "workspace"),
    # failures while running: a file's content, weights, or what the output folder holds
    case(
        "{extract} --labels {c}/labels.csv", 1, "labels.csv", "missing column 'image'", labels__csv=b"path,cat\na,1\n"
    ),
    case(
        "{extract} --labels {c}/labels.csv",
        1,
        "class 'cat' is '2'; expected 0 or 1",
        labels__csv=b"image,cat,dog\n0.png,2,0\n",
    ),
    case(
        "{extract} --labels {c}/labels.csv",
        1,
        "'../../etc/passwd' (row 0) is not allowed",
        labels__csv=b"image,cat\n../../etc/passwd,1\n",
    ),
    case(
        "{extract} --labels {c}/labels.csv",
        1,
        "'/etc/passwd'",
        "not allowed",
        labels__csv=b"image,cat\n/etc/passwd,1\n",
    ),
    case(
        "{extract} --labels {c}/labels.csv",
        1,
        "duplicate image id 'x'",
        labels__csv=b"image,image_id,cat\n0.png,x,1\n1.png,x,0\n",
    ),
    case(
        "{extract} --labels {c}/labels.csv",
        1,
        "split 'my split' is not allowed",
        labels__csv=b"image,split,cat\n0.png,My Split,1\n",
    ),
    case("{extract} --labels {c}/labels.csv", 1, "labels.csv", "no rows", labels__csv=b"image,cat\n"),
    case("{extract} --labels {c}/labels.csv", 1, "not a readable CSV", labels__csv=b"\xff\xfe\x00\x81garbage"),
    case("{extract} --vocabulary {c}/v.txt", 1, "v.txt", "no words", v__txt=b"\n \n\t\n"),
    case("{extract} --vocabulary {c}/v.txt", 1, "v.txt", "has 200 characters; the limit is 100", v__txt=b"x" * 200),
    case("{extract} --vocabulary {c}/v.txt", 1, "v.txt", "is not UTF-8", v__txt=b"dog\n\xff\xfe cat\n"),
    case(
        "{extract} --vocabulary {c}/v.txt",
        1,
        "more than 5,000 words",
        v__txt="".join(f"w{i}\n" for i in range(5001)).encode(),
    ),
    case("{extract} --vocabulary {c}/v.txt", 1, "U+0007", "printable", v__txt=b"dog\nbell\x07\n"),
    case(
        "{extract} --teacher {c}/l.csv",
        1,
        "logits for 1 images the labels do not list, e.g. ['elsewhere']",
        l__csv=(LOGITS + "elsewhere,1,1\n").encode(),
    ),
    case("{extract} --teacher {c}/l.csv", 1, "no logits column for classes ['dog']", l__csv=b"image_id,cat\nim0,1\n"),
    case("{extract} --teacher {c}/l.csv", 1, "l.csv", "NaN or inf", l__csv=LOGITS.replace("0.1", "nan", 1).encode()),
    case("{extract} --teacher {c}/l.csv", 1, "no logits for 1 images", l__csv=LOGITS.rsplit("im5", 1)[0].encode()),
    case(
        "{extract} --teacher {c}/l.csv", 1, "logits must be numbers", l__csv=LOGITS.replace("0.1", "high", 1).encode()
    ),
    case(
        "{extract} --checkpoint {c}/w.safetensors", 1, "Cannot read checkpoint", "w.safetensors", w__safetensors=b"junk"
    ),
    case("{extract} --teacher {c}/t.pt", 1, "t.pt", "not a TorchScript model", t__pt=b"junk"),
    case(
        "extract --images {k}/images --labels {k}/labels.csv --model {k}/model/tiny-vit-test.json "
        "--pretrained openai --out {c}/ws",
        1,
        "Unknown pretrained tag 'openai'",
        "--checkpoint FILE",
    ),
    case("gram {k}/a-folder", 1, "a-folder", "is not a ConceptKD workspace"),
    case("{extract} --out {k}", 1, "is not empty and holds no workspace"),
    case(
        "{extract} --out {k}/unfinished --segments 24",
        1,
        "unfinished extraction",
        "segments per image (8 then, 24 now)",
    ),
    case("{extract} --out {k}/unfinished --segments 8 --batch-size 3", 1, "unfinished", "batch size (2 then, 3 now)"),
    case("{extract} --out {k}/finished --segments 24", 1, "finished workspace", "segments per image (8 then, 24 now)"),
    case(
        "{extract} --out {k}/finished --segments 8 --teacher {c}/l.csv",
        1,
        "finished workspace",
        "teacher",
        l__csv=LOGITS.encode(),
    ),
    case(
        "{extract} --out {k}/finished --segments 8 --vocabulary {c}/v.txt",
        1,
        "finished",
        "vocabulary",
        v__txt=b"dog\ncat\n",
    ),
    case(
        "{extract} --out {k}/finished --segments 8 --labels {c}/labels.csv",
        1,
        "finished",
        "images or labels",
        labels__csv=SCENES.replace("all,dog", "all,cat", 1).encode(),
    ),
]


@pytest.mark.parametrize("hostile", CLI_CASES, ids=lambda c: c.argv[:60] or "(nothing)")
def test_cli_refuses_in_one_line_and_changes_nothing(hostile, kit, tmp_path, capsys):
    for name, data in hostile.files:
        (tmp_path / name).write_bytes(data)
    words = hostile.argv.replace("{extract}", EXTRACT)
    argv = [w.format(k=kit, c=tmp_path) for w in shlex.split(words)]
    before = snapshot(kit, tmp_path)
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in hostile.says:
        assert needle in lines[0], (needle, lines[0])
    assert status == hostile.status, lines[0]
    assert snapshot(kit, tmp_path) == before


def test_cli_reruns_with_the_same_settings_do_nothing(kit, capsys):
    argv = shlex.split(EXTRACT.replace("{c}/ws", "{k}/finished").format(k=kit)) + ["--segments", "8"]
    before = snapshot(kit / "finished")
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith(f"up to date: {kit / 'finished'} already holds these 6 images")
    assert "No pretrained weights loaded" not in err and not err.strip()  # no spurious open_clip warning
    assert snapshot(kit / "finished") == before


def test_debug_shows_the_traceback_instead(kit):
    with pytest.raises(WorkspaceError, match="is not a ConceptKD workspace"):
        cli.main(["gram", str(kit / "a-folder"), "--debug"])


# ============================================================================= workspace files
@pytest.fixture(scope="module")
def demo(opened_demo_subset, tmp_path_factory):
    """A copy of the small demo, opened once so that its caches (students.json, gram.npz) are written."""
    return copy_demo_subset(opened_demo_subset, tmp_path_factory.mktemp("hostile-demo"))


@pytest.fixture
def damaged(demo, tmp_path):
    """A fresh copy of the small demo workspace (its images shared) to damage."""
    copy = tmp_path / "workspace"
    shutil.copytree(demo, copy)
    (tmp_path / "images").symlink_to(demo.parent / "images")
    return copy


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_meta(change):
    return lambda ws: edit_json(ws / "conceptkd.json", change)


def rewrite_recorded(ws: Path, name: str, write) -> None:
    """Change a data file *and* its record in the metadata, as someone who knows the format would:
    the size and checksum pass, so only the validation of the content can catch it."""
    write(ws / name)

    def record(meta):
        meta["files"][name] = {"bytes": (ws / name).stat().st_size, "sha256": sha256_file(ws / name)}

    edit_json(ws / "conceptkd.json", record)


def npy_edit(name: str, change):
    def apply(ws: Path) -> None:
        def write(path):
            array = np.load(path).copy()
            np.save(path, change(array))

        rewrite_recorded(ws, name, write)

    return apply


def manifest_path(bad: str):
    def apply(ws: Path) -> None:
        import pyarrow.parquet as pq

        def write(path):
            table = pq.read_table(path)
            paths = table.column("path").to_pylist()
            paths[3] = bad
            table = table.set_column(table.column_names.index("path"), "path", __import__("pyarrow").array(paths))
            pq.write_table(table, path)

        rewrite_recorded(ws, "manifest.parquet", write)

    return apply


def truncate(name: str, keep: int = 100):
    return lambda ws: (ws / name).write_bytes((ws / name).read_bytes()[:keep])


def flip_byte(name: str):
    def apply(ws: Path) -> None:
        data = bytearray((ws / name).read_bytes())
        data[-5] ^= 0x55
        (ws / name).write_bytes(bytes(data))

    return apply


def replace_text(name: str, old: str, new: str):
    return lambda ws: (ws / name).write_text((ws / name).read_text().replace(old, new, 1))


def gram_edit(change, resign: bool):
    """Change gram.npz's arrays; ``resign``: recompute its checksum too (only validation can catch it then)."""

    def apply(ws: Path) -> None:
        with np.load(ws / "gram.npz") as saved:
            fields = {k: saved[k].copy() for k in saved.files}
        change(fields)
        if resign:
            arrays = {name: fields[name] for name in GRAM_FIELDS}
            fields["sha256"] = np.asarray(
                _gram_checksum(str(fields["workspace_id"]), str(fields["split_digest"]), arrays)
            )
        np.savez(ws / "gram.npz", **fields)

    return apply


def students_edit(change, resign: bool):
    def apply(ws: Path) -> None:
        def edit(doc):
            doc.pop("sha256")
            change(doc)
            if resign:
                doc["sha256"] = canonical_sha256(doc)
            else:
                doc["sha256"] = "0" * 64

        edit_json(ws / "students.json", edit)

    return apply


def scaled(field: str, factor: float = 3.0):
    def change(fields):
        fields[field] = fields[field] * factor

    return change


def segment_values(name: str, row: int, value):
    def change(array):
        array[row].flat[0] = value
        return array

    return npy_edit(f"segments/{name}.npy", change)


def set_key(key, value):
    def change(meta):
        meta[key] = value

    return change


def set_nested(outer, key, value):
    def change(meta):
        meta[outer][key] = value

    return change


def shape_of_students(doc):
    doc["students"]["students"]["coef"] = doc["students"]["students"]["coef"][:3]


def refusing(*says):
    """Opening the workspace must fail with one WorkspaceError naming all of ``says``."""
    return ("load", says)


def reported(attribute, *says):
    """The workspace opens; ``explorer.<attribute>`` names the problem (the cache is rebuilt)."""
    return (attribute, says)


WORKSPACE_CASES = {
    "meta not JSON": (
        replace_text(
            "conceptkd.json",
            "{",
            "<",
        ),
        refusing("conceptkd.json", "malformed or truncated JSON"),
    ),
    "meta NaN": (
        replace_text("conceptkd.json", '"n_images": 40', '"n_images": NaN'),
        refusing("NaN is not a number JSON allows"),
    ),
    "meta 1e999": (
        replace_text("conceptkd.json", '"n_images": 40', '"n_images": 1e999'),
        refusing("1e999 is out of range"),
    ),
    "meta version as text": (edit_meta(set_key("schema_version", "1")), refusing("unknown schema version '1'")),
    "meta classes not a list": (edit_meta(set_key("classes", "cat")), refusing("classes must be a list")),
    "meta 0 classes": (edit_meta(set_key("classes", [])), refusing("classes must be a list of 1 to")),
    "meta n_images -1": (edit_meta(set_key("n_images", -1)), refusing("n_images -1 must be a whole number")),
    "meta n_concepts 100k": (edit_meta(set_key("n_concepts", 100000)), refusing("n_concepts 100000", "1 to 5,000")),
    "meta image_root absolute": (edit_meta(set_key("image_root", "/etc")), refusing("image_root '/etc'", "relative")),
    "meta file record outside": (
        edit_meta(lambda m: m["files"].update({"../../etc/passwd": {"bytes": 1, "sha256": "0" * 64}})),
        refusing("'../../etc/passwd', which is no workspace file"),
    ),
    "meta checksum not hex": (
        edit_meta(lambda m: m["files"]["concepts.npy"].update(sha256="zz")),
        refusing("the record of concepts.npy must hold bytes"),
    ),
    "meta workspace_id path": (edit_meta(set_key("workspace_id", "../x")), refusing("workspace_id '../x'")),
    "meta teacher source number": (edit_meta(set_nested("teacher", "source", 7)), refusing("teacher.source")),
    "meta extra not an object": (edit_meta(set_key("extra", [1])), refusing("extra must be a JSON object")),
    "meta 5 MB": (
        edit_meta(lambda m: m["extra"].update(padding="x" * (5 * 2**20))),
        refusing("over the limit of 4,194,304 bytes"),
    ),
    "meta missing": (lambda ws: (ws / "conceptkd.json").unlink(), refusing("is not a ConceptKD workspace")),
    "concepts truncated": (
        truncate("concepts.npy"),
        refusing("concepts.npy", "bytes but the workspace metadata records"),
    ),
    "concepts one byte changed": (flip_byte("concepts.npy"), refusing("concepts.npy", "does not match the checksum")),
    "logits NaN, record updated": (
        npy_edit("teacher_logits.npy", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 7, np.nan, a)),
        refusing("teacher logits contain NaN or inf"),
    ),
    "concepts pickled object array": (
        lambda ws: rewrite_recorded(
            ws, "concepts.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        ),
        refusing("concepts.npy", "not a plain numeric .npy array"),
    ),
    "manifest ../ path": (
        manifest_path("../../../etc/passwd"),
        refusing("'../../../etc/passwd' (row 3) is not allowed"),
    ),
    "manifest absolute path": (manifest_path("/etc/passwd"), refusing("'/etc/passwd' (row 3) is not allowed")),
    "manifest NUL in path": (manifest_path("a\x00b.png"), refusing("(row 3) is not allowed")),
    "vocabulary edited, record updated": (
        lambda ws: rewrite_recorded(
            ws, "vocabulary.txt", lambda p: p.write_text(p.read_text().replace("bird", "b1rd"))
        ),
        refusing("vocabulary.txt", "hash mismatch"),
    ),
    "segment map truncated": (
        truncate("segments/segment_maps.npy", 500),
        reported("segments_problem", "segments/segment_maps.npy", "bytes but the workspace metadata records"),
    ),
    "segment file missing": (
        lambda ws: (ws / "segments" / "top_concepts.npy").unlink(),
        reported("segments_problem", "incomplete: top_concepts missing"),
    ),
    "segment dtype changed, record updated": (
        npy_edit("segments/top_scores.npy", lambda a: a.astype(np.float64)),
        reported("segments_problem", "top_scores.npy", "holds float64", "expected float16"),
    ),
    "gram truncated": (
        truncate("gram.npz", 300),
        reported("notices", "gram.npz", "not a readable Gram cache", "rebuilt"),
    ),
    "gram scaled x3": (
        gram_edit(scaled("gram"), resign=False),
        reported("notices", "gram.npz", "does not match its checksum"),
    ),
    "gram NaN, re-signed": (
        gram_edit(lambda f: f["xty"].__setitem__((0, 0), np.nan), resign=True),
        reported("notices", "gram.npz", "xty must be finite numbers"),
    ),
    "gram asymmetric, re-signed": (
        gram_edit(lambda f: f["gram"].__setitem__((0, 1), f["gram"][0, 1] + 1.0), resign=True),
        reported("notices", "gram.npz", "asymmetric Gram matrix"),
    ),
    "gram negative variance, re-signed": (
        gram_edit(lambda f: f["yty"].__setitem__(0, -5.0), resign=True),
        reported("notices", "gram.npz", "a negative variance"),
    ),
    "gram field missing": (
        gram_edit(lambda f: f.pop("lipschitz"), resign=False),
        reported("notices", "gram.npz", "not a readable Gram cache", "lipschitz"),
    ),
    "students scaled x3": (
        students_edit(
            lambda d: d["students"].update(coef=(np.array(d["students"]["coef"]) * 3).tolist()), resign=False
        ),
        reported("notices", "students.json", "does not match its checksum", "fitted again"),
    ),
    "students truncated": (
        truncate("students.json"),
        reported("notices", "students.json", "malformed or truncated JSON"),
    ),
    "students NaN": (
        replace_text("students.json", '"alpha": 0.001', '"alpha": NaN'),
        reported("notices", "students.json", "NaN is not a number JSON allows"),
    ),
    "students wrong shape, re-signed": (
        students_edit(lambda d: d["students"].update(coef=d["students"]["coef"][:3]), resign=True),
        reported("notices", "students.json", "unusable students", "expected (20, 107)"),
    ),
    "students other vocabulary, re-signed": (
        students_edit(lambda d: d.update(vocabulary_sha256="0" * 64), resign=True),
        reported("notices", "students.json", "different vocabulary"),
    ),
}


@pytest.mark.parametrize("name", list(WORKSPACE_CASES))
def test_damaged_workspace_files_are_named_and_nothing_else_changes(name, damaged):
    damage, (where, says) = WORKSPACE_CASES[name]
    damage(damaged)
    caches = {"gram.npz", "students.json"}
    before = {k: v for k, v in snapshot(damaged).items() if Path(k).name not in caches}
    if where == "load":
        with pytest.raises(WorkspaceError) as caught:
            open_explorer(damaged)
        message = str(caught.value)
        assert "\n" not in message
    else:
        explorer = open_explorer(damaged)  # the other views still work
        message = " ".join(getattr(explorer, where) or ())
        if where == "segments_problem":
            message = explorer.segments_problem
            assert explorer.segments is None
        else:
            assert explorer.segments_problem is None
    for needle in says:
        assert needle in message, (needle, message)
    after = {k: v for k, v in snapshot(damaged).items() if Path(k).name not in caches}
    assert after == before


@pytest.mark.parametrize(
    "array, row, value, says",
    [
        ("segment_maps", 2, 200, "segment ids 0..63"),
        ("best_segment", 5, 99, "segment ids 0..63"),
        ("top_concepts", 1, 5000, "concepts -1..106"),
        ("top_scores", 4, np.inf, "finite scores"),
    ],
)
def test_a_damaged_segment_row_is_refused_when_drawn(damaged, array, row, value, says):
    segment_values(array, row, value)(damaged)
    explorer = open_explorer(damaged)
    ws = explorer.workspace
    with pytest.raises(WorkspaceError, match=says) as caught:
        segment_row(explorer.segments, ws, row)
    assert f"{array}.npy" in str(caught.value) and repr(str(ws.image_ids[row])) in str(caught.value)
    segment_row(explorer.segments, ws, row + 1)  # the other rows still draw


def test_a_damaged_autosave_is_listed_with_its_problem(damaged):
    explorer = open_explorer(damaged)
    session = new_session(explorer)
    session.set_weight(0, 0, 0.25)
    (damaged / "sessions" / "broken.json").write_text('{"format": "conceptkd.tuning", "version": 1, "events": [')
    table = saved_sessions(explorer).set_index("session_id")
    assert table.loc[session.session_id, "problem"] == ""
    assert "malformed or truncated JSON" in table.loc["broken", "problem"]


# ============================================================================= tuning logs
@pytest.fixture(scope="module")
def tuned(demo):
    """The demo copy opened, and a log of four real edits over it: set, upweight, a batch lock of
    three weights, and a removal that was undone."""
    explorer = open_explorer(demo)
    session = new_session(explorer, autosave=False)
    j = int(abs(session.bank.coef_[0]).argmax())
    session.set_weight(0, j, 0.5)
    session.upweight(1, int(abs(session.base.coef[1]).argmax()), 1.5)
    session.apply_batch("lock", [(3, int(k)) for k in np.argsort(-abs(session.bank.coef_[3]))[:3]])
    session.remove(2, int(abs(session.bank.coef_[2]).argmax()))
    session.undo()
    return explorer, session.export_json(), j


def resigned(change):
    """Edit the log's content and recompute its checksum, as someone crafting a log would."""

    def apply(text: str) -> str:
        doc = json.loads(text)
        doc.pop("sha256")
        change(doc)
        return json.dumps(doc | {"sha256": canonical_sha256(doc)})

    return apply


def first_event(key, value):
    return resigned(lambda d: d["events"][0].__setitem__(key, value))


def tripled_weight(doc):
    idx, vals = doc["events"][1]["coef"]["1"]
    vals[-1] *= 3
    doc["students"]["coef"][1][idx[-1]] = vals[-1]


def nudged_base(doc):
    doc["base"]["coef"][0][0] += 0.5
    doc["students"]["coef"][0][0] += 0.5


def LOG(text_change, *says):
    return (text_change, says)


LOG_CASES = {
    "truncated": LOG(lambda t: t[: len(t) // 2], "malformed or truncated JSON"),
    "NaN": LOG(lambda t: t.replace('"cursor": 3', '"cursor": NaN'), "NaN is not a number JSON allows"),
    "Infinity": LOG(lambda t: t.replace('"cursor": 3', '"cursor": -Infinity'), "-Infinity is not a number"),
    "1e999": LOG(lambda t: t.replace('"cursor": 3', '"cursor": 1e999'), "1e999 is out of range"),
    "17 MB": LOG(lambda t: t[:-2] + ', "pad": "' + "x" * (17 * 2**20) + '"}', "over the limit of 16,777,216 bytes"),
    "nested 100,000 deep": LOG(lambda t: "[" * 100000 + "]" * 100000, "nested too deeply"),
    "not UTF-8": LOG(lambda t: t.encode("utf-16"), "not UTF-8 text"),
    "a list": LOG(lambda t: "[1, 2]", "Not a ConceptKD tuning file"),
    "other format": LOG(lambda t: t.replace("conceptkd.tuning", "other.tool"), "Not a ConceptKD tuning file"),
    "version 7": LOG(lambda t: t.replace('"version": 1', '"version": 7'), "Unsupported tuning file version 7"),
    "version true": LOG(resigned(lambda d: d.update(version=True)), "Unsupported tuning file version True"),
    "a number edited": LOG(lambda t: t.replace('"cursor": 3', '"cursor": 1'), "checksum does not match"),
    "no checksum": LOG(lambda t: t.replace('"sha256"', '"sha"'), "checksum does not match"),
    "events not a list": LOG(resigned(lambda d: d.update(events={"0": 1})), "list of at most 2,000 edits"),
    "2,001 events": LOG(resigned(lambda d: d.update(events=[d["events"][0]] * 2001)), "list of at most 2,000 edits"),
    "cursor -1": LOG(resigned(lambda d: d.update(cursor=-1)), "cursor -1 is outside the history 0..4"),
    "cursor true": LOG(resigned(lambda d: d.update(cursor=True)), "cursor True is outside the history"),
    "other classes": LOG(resigned(lambda d: d["classes"].reverse()), "different classes or vocabulary"),
    "other workspace": LOG(
        resigned(lambda d: d["stamp"].update(workspace_id="f" * 32)), "belongs to another workspace (workspace_id"
    ),
    "stamp not an object": LOG(resigned(lambda d: d.update(stamp=[])), "'stamp' must be an object"),
    "unknown operation": LOG(first_event("op", "explode"), "edit 1: unknown operation 'explode'"),
    "concept out of range": LOG(first_event("concept", 10**6), "concept 1000000 is not an index 0..106"),
    "class out of range": LOG(first_event("classes", [99]), "classes [99] are not distinct indices 0..19"),
    "two classes for one edit": LOG(first_event("classes", [0, 1]), "are not distinct indices"),
    "extra argument": LOG(first_event("args", {"value": 0.5, "evil": 1}), "arguments must be value"),
    "argument not a number": LOG(first_event("args", {"value": "abc"}), "expected a number; got 'abc'"),
    "argument inf": LOG(first_event("args", {"value": "inf"}), "its arguments must be finite numbers"),
    "time 500 characters": LOG(first_event("time", "x" * 500), "time must be a text of at most 200 characters"),
    "user not text": LOG(first_event("user", {"name": "x"}), "user must be a text"),
    "weight index out of range": LOG(
        resigned(lambda d: d["events"][0]["coef"]["0"][0].__setitem__(0, 5000)), "weights are malformed or out of range"
    ),
    "bounds name another class": LOG(
        resigned(lambda d: d["events"][0]["bounds"][0].__setitem__(0, 50)),
        "bounds name a class or concept out of range",
    ),
    "audit holds an object": LOG(resigned(lambda d: d["audit"].append({"x": {"y": 1}})), "audit must be a list"),
    "session_id 500 characters": LOG(resigned(lambda d: d.update(session_id="s" * 500)), "session_id must be a text"),
    "crafted weight": LOG(resigned(tripled_weight), "edit 2 (upweight) does not replay", "weights it records"),
    "batch pair out of range": LOG(
        resigned(lambda d: d["events"][2]["args"]["pairs"][0].__setitem__(1, 5000)),
        "edit 3 (lock): its pairs must be a list of [class, concept] indices",
    ),
    "batch classes not its pairs'": LOG(
        resigned(lambda d: d["events"][2].update(classes=[4])), "edit 3 (lock): classes [4] are not distinct"
    ),
    "crafted batch weight": LOG(
        resigned(lambda d: d["events"][2]["coef"]["3"][1].__setitem__(-1, 7.0)), "edit 3 (lock) does not replay"
    ),
    "crafted bound": LOG(
        resigned(lambda d: d["events"][0]["bounds"][0].__setitem__(2, 0.25)), "edit 1 (set) does not replay", "bounds"
    ),
    "crafted base": LOG(resigned(nudged_base), "base students in the tuning file are not the fit"),
    "base with bounds": LOG(
        resigned(lambda d: d["base"]["lower"].append([0, 0, -1.0])), "base students in the tuning file carry bounds"
    ),
    "other solver settings": LOG(resigned(lambda d: d["students"].update(alpha=0.5)), "solver settings"),
    "saved students not the end": LOG(
        resigned(lambda d: d["students"]["coef"][5].__setitem__(0, 9.0)), "saved students' weights are not the end"
    ),
    "edit a factor cannot take": LOG(
        resigned(lambda d: d["events"][1]["args"].update(factor=0.5)), "edit 2 (upweight) cannot be applied", "factor"
    ),
}


@pytest.mark.parametrize("name", list(LOG_CASES))
def test_bad_tuning_logs_are_refused_and_change_nothing(name, tuned, tmp_path):
    explorer, text, _ = tuned
    change, says = LOG_CASES[name]
    autosave = tmp_path / "sessions" / "imported.json"
    before = explorer.base_bank.coef_.copy()
    with pytest.raises(TuningError) as caught:
        import_session(explorer, change(text), autosave)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 1000
    for needle in says:
        assert needle in message, (needle, message)
    assert not autosave.exists() and not (tmp_path / "sessions").exists()
    np.testing.assert_array_equal(explorer.base_bank.coef_, before)


def test_a_log_whose_batch_removes_one_concept_from_every_class_imports(tuned):
    explorer, _, j = tuned
    session = new_session(explorer, autosave=False)
    event = session.apply_batch("remove", [(c, j) for c in range(len(explorer.classes))])
    assert event.concept == j  # a batch over one concept names it
    restored = import_session(explorer, session.export_json())
    np.testing.assert_array_equal(restored.bank.coef_, session.bank.coef_)
    assert (restored.bank.coef_[:, j] == 0).all() and restored.events[0].args["pairs"] == event.args["pairs"]


def test_a_real_log_with_null_metrics_imports_and_its_figures_are_recomputed(tuned):
    explorer, text, _ = tuned
    nulled = resigned(lambda d: [e.update(metrics_after={"0": None}, metrics_before=None) for e in d["events"]])
    session = import_session(explorer, nulled(text))
    assert session.cursor == 3 and len(session.events) == 4
    assert all(isinstance(m["student_ap"], float) for e in session.events for m in e.metrics_after.values())


# ============================================================================= pages
def app_on(workspace: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["workspace_root"] = str(workspace)
    at.run()
    assert not at.exception, at.exception
    return at


def typed(text: str):
    def act(at):
        at.text_input(key="workspace_input").set_value(text).run()
        return [as_read(e.value) for e in at.sidebar.error]

    return act


def vocabulary_text(text_of):
    def act(at):
        at.switch_page("views/setup.py").run()
        area = next(a for a in at.text_area if a.key.startswith("vocab_"))
        area.set_value(text_of(area.value)).run()
        return [e.value for e in at.error] + [c.value for c in at.caption] + [m.value for m in at.markdown]

    return act


REFUSED_FOLDER = "is outside the folders this server allows: data/, workspaces/"

PAGE_CASES = {
    # the box keeps the first 400 characters: a folder name of 395 is then refused
    "path of 5,000 characters": (typed("data/" + "x" * 4995), "has 395 characters; the limit is 255"),
    "path with NUL": (typed("data/demo\x00/workspace"), "control character"),
    "path with a newline": (typed("data/demo\n/workspace"), "control character"),
    "existing server folder /etc": (typed("/etc"), REFUSED_FOLDER),
    "missing server folder": (typed("/no/such/folder"), REFUSED_FOLDER),
    "climbing out of data/": (typed("data/../../../etc"), REFUSED_FOLDER),
    "unknown root name": (typed("etc/passwd"), REFUSED_FOLDER),
    "empty path": (typed("   "), "no folder given"),
    "vocabulary of 5,001 words": (
        vocabulary_text(lambda v: "".join(f"w{i}\n" for i in range(5001))),
        "more than 5,000 words",
    ),
    "vocabulary word of 101 characters": (vocabulary_text(lambda v: v + "\n" + "y" * 101), "the limit is 100"),
    "vocabulary control character": (vocabulary_text(lambda v: v + "\nbell\x07"), "U+0007"),
    "vocabulary duplicates": (
        vocabulary_text(lambda v: v + "\nBird\n bird \n"),
        "2 duplicate words dropped: bird, bird",
    ),
    "vocabulary with Markdown and HTML": (
        vocabulary_text(lambda v: v + "\n![x](http://example.com/t.png) <b>bold</b>\n"),
        literal("![x](http://example.com/t.png) <b>bold</b>"),  # escaped, its address broken
    ),
}


@pytest.mark.parametrize("name", list(PAGE_CASES))
def test_pages_refuse_bad_input_and_keep_the_workspace(name, demo):
    act, says = PAGE_CASES[name]
    at = app_on(demo)
    before = snapshot(demo.parent)
    shown = act(at)
    assert not at.exception, at.exception
    assert any(says in text or says in as_read(text) for text in shown), (says, shown)
    assert at.session_state["workspace_root"] == str(demo)  # the open workspace stays
    assert all(str(ROOT) not in text and "/tmp/" not in text for text in shown)  # no server path shown
    assert snapshot(demo.parent) == before


def test_the_same_refusal_for_an_existing_and_a_missing_server_folder(demo):
    at = app_on(demo)
    paths = ("/etc", "/no/such/folder", "/root", "/etc/../tmp")
    # Each refusal quotes what was typed; beyond that, nothing tells whether the folder exists.
    answers = [[text.replace(repr(path), "PATH") for text in typed(path)(at)] for path in paths]
    assert all(answer == answers[0] for answer in answers) and answers[0]


@pytest.mark.parametrize(
    "damage, page, says",
    [
        (
            truncate("segments/segment_maps.npy", 500),
            "views/images.py",
            "No segment overlays: segments/segment_maps.npy",
        ),
        (gram_edit(scaled("xty"), resign=False), "views/students.py", "gram.npz: content does not match its checksum"),
        (manifest_path("/etc/passwd"), "views/setup.py", "'/etc/passwd' (row 3) is not allowed"),
    ],
)
def test_a_damaged_file_is_named_on_the_page_that_needs_it_and_the_others_work(damaged, damage, page, says):
    damage(damaged)
    at = app_on(damaged)
    for script in ("views/setup.py", "views/students.py", "views/concepts.py", "views/images.py", "views/history.py"):
        at.switch_page(script).run()
        assert not at.exception, (script, at.exception)
        if script == page:
            texts = [as_read(w.value) for w in at.warning]
            assert any(says in text for text in texts), (says, texts)
            assert all(str(damaged.parent) not in text for text in texts)  # no server path


def test_html_in_the_data_is_shown_as_text(tmp_path):
    """Concept words are data: a word that is HTML reaches the pages' HTML legends escaped."""
    attack = "<img src=x onerror=alert(1)>"
    root = make_demo_subset(tmp_path / "demo", per_split=5, word=lambda w: f"{w} {attack}")
    at = app_on(root)
    for script in ("views/images.py", "views/concepts.py", "views/students.py", "views/tune.py"):
        at.switch_page(script).run()
        assert not at.exception, (script, at.exception)
        html_blocks = [m.value for m in at.markdown if m.proto.allow_html]
        assert all(attack not in block for block in html_blocks), script
        if script == "views/images.py":
            assert any(literal(attack) in block for block in html_blocks)  # the legend names the words
