"""The teacher registry: each spec kind gives the right teacher with the right preprocessing, a bad
spec is one clear line, and a workspace's recorded teacher is rebuilt to score as it did."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conceptkd_core import defaults
from conceptkd_core.datasets import load_folder
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.segments import recorded_n_segments
from conceptkd_core.extract.teacher_registry import (
    ALLOWED_SPECS,
    IMAGENET,
    create_teacher,
    find_teacher,
    recorded_teacher_spec,
    teacher_for_workspace,
    teacher_from_workspace,
    teacher_kind,
)
from conceptkd_core.extract.teachers import ClipZeroShotTeacher, LogitsFileTeacher, TeacherError, TorchTeacher
from conceptkd_core.extract.torch_compat import import_open_clip
from conceptkd_core.images import Preprocessing, load_rgb, to_tensor
from conceptkd_core.store.workspace import load_workspace
from conceptkd_tools.demo import DEMO_DIR, DEMO_SEGMENTS, TEACHER_PREPROCESSING

from tiny_clip import make_tiny_checkpoint, write_labelled_scenes

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("cat", "dog")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    config, weights = make_tiny_checkpoint(tmp_path_factory.mktemp("model"))
    return load_clip(str(config), checkpoint=weights)


@pytest.fixture(scope="module")
def demo_workspace():
    return load_workspace(DEMO_DIR / "workspace")


class MeanColour(torch.nn.Module):
    """A stand-in classifier: logits from the mean colour."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_clip_zero_shot_uses_the_clips_preprocessing(tiny_clip):
    teacher = create_teacher("clip-zero-shot", CLASSES, clip=tiny_clip)
    assert isinstance(teacher, ClipZeroShotTeacher) and teacher.clip is tiny_clip
    assert teacher.preprocessing == Preprocessing(tiny_clip.image_size, tiny_clip.mean, tiny_clip.std)
    assert teacher.identity["kind"] == teacher_kind("clip-zero-shot") == "clip-zero-shot"


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".pth", ".JIT"])
def test_torchscript_files_get_imagenet_preprocessing_unless_given(tmp_path, suffix):
    path = tmp_path / f"teacher{suffix}"
    torch.jit.save(torch.jit.script(MeanColour()), str(path))
    teacher = create_teacher(str(path), CLASSES)
    assert isinstance(teacher, TorchTeacher) and teacher_kind(path) == "torch"
    assert teacher.preprocessing == IMAGENET
    assert (IMAGENET.image_size, IMAGENET.mean, IMAGENET.std) == (
        224,
        pytest.approx(defaults.IMAGENET_MEAN),
        pytest.approx(defaults.IMAGENET_STD),
    )
    given = Preprocessing(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    identity = create_teacher(path, CLASSES, preprocessing=given).identity
    assert identity["kind"] == "torch" and identity["source"] == str(path)
    assert (identity["image_size"], identity["mean"], identity["std"]) == (32, [0.5] * 3, [0.25] * 3)


def test_a_torch_module_scores_with_its_preprocessing(tmp_path):
    given = Preprocessing(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    module = MeanColour()
    teacher = create_teacher(module, CLASSES, preprocessing=given)
    assert isinstance(teacher, TorchTeacher) and teacher.model is module and teacher.preprocessing == given
    images = [load_rgb(p) for p in sorted((DEMO_DIR / "images").iterdir())[:2]]
    with torch.inference_mode():
        expected = module(given.to_tensor(images)).numpy()
    np.testing.assert_array_equal(teacher.logits(images), expected)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
def test_logits_files_read_no_pixels(tmp_path, suffix):
    path = tmp_path / f"logits{suffix}"
    values = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)
    if suffix == ".npy":
        np.save(path, values)
    elif suffix == ".csv":
        pd.DataFrame({"image_id": ["a", "b"], "cat": values[:, 0], "dog": values[:, 1]}).to_csv(path, index=False)
    else:
        pd.DataFrame({"image_id": ["a", "b"], "cat": values[:, 0], "dog": values[:, 1]}).to_parquet(path)
    teacher = create_teacher(path, CLASSES, image_ids=["a", "b"])
    assert isinstance(teacher, LogitsFileTeacher) and teacher.preprocessing is None
    assert teacher.identity["kind"] == teacher_kind(path) == "logits-file"
    np.testing.assert_array_equal(teacher.logits([None, None], ["b", "a"]), values[::-1])


@pytest.mark.parametrize("spec", ["model.onnx", "clip", 42, None, np.zeros((3, 3))])
def test_a_bad_spec_is_one_line_naming_it_and_the_kinds_allowed(spec):
    with pytest.raises(TeacherError) as error:
        create_teacher(spec, CLASSES)
    message = str(error.value)
    assert "\n" not in message
    assert " ".join(repr(spec).split()) in message and message.endswith(ALLOWED_SPECS)
    for kind in ("clip-zero-shot", ".pt", ".jit", "torch module", ".csv", ".parquet", ".npy"):
        assert kind in message


def test_misplaced_arguments_are_refused(tmp_path):
    with pytest.raises(TeacherError, match="clip-zero-shot: needs the CLIP model"):
        create_teacher("clip-zero-shot", CLASSES)
    with pytest.raises(TeacherError, match="torch teachers only; got one for a logits-file teacher"):
        create_teacher(tmp_path / "l.csv", CLASSES, preprocessing=IMAGENET)
    with pytest.raises(ValueError, match="Got image_size 0, mean \\[0.5, 0.5\\]"):
        Preprocessing(0, (0.5, 0.5), (1, 1, 1))


def test_the_demo_teacher_rebuilt_from_its_workspace_reproduces_the_shipped_logits(demo_workspace):
    assert Path(recorded_teacher_spec(demo_workspace)).name == "teacher.pt"
    teacher = teacher_from_workspace(demo_workspace)
    assert isinstance(teacher, TorchTeacher) and teacher.preprocessing == TEACHER_PREPROCESSING
    rows = [0, 1, 2, 3]
    images = [load_rgb(demo_workspace.image_path(r)) for r in rows]
    logits = teacher.logits(images, [demo_workspace.image_ids[r] for r in rows])
    np.testing.assert_allclose(logits, demo_workspace.teacher_logits[rows], atol=1e-3)
    assert teacher.identity | {"source": None} == demo_workspace.meta["teacher"] | {"source": None}
    assert recorded_n_segments(demo_workspace) == DEMO_SEGMENTS


def test_recorded_teachers_that_cannot_be_rebuilt_say_why(demo_workspace, tmp_path):
    def workspace(teacher: dict):
        return SimpleNamespace(root=tmp_path / "ws", meta={"teacher": teacher}, classes=CLASSES)

    cases = [
        ({"kind": "logits-file", "source": "l.csv"}, "it is a logits file (l.csv), which has no logits"),
        (
            demo_workspace.meta["teacher"] | {"source": str(tmp_path / "gone.pt")},
            f"no TorchScript file with SHA-256 {demo_workspace.meta['teacher']['sha256'][:12]}…",
        ),
        ({"kind": "torch", "source": None, "sha256": None}, "it was a torch module given in memory"),
    ]
    for teacher, why in cases:
        assert recorded_teacher_spec(workspace(teacher)) is None
        assert find_teacher(workspace(teacher), roots=[tmp_path]) is None
        for rebuild in (teacher_from_workspace, lambda ws: teacher_for_workspace(ws, roots=[tmp_path])):
            with pytest.raises(TeacherError, match=re.escape(f"cannot rebuild its teacher here: {why}")):
                rebuild(workspace(teacher))
    shutil.copy(DEMO_DIR / "teacher.pt", tmp_path / "teacher.pt")  # beside the workspace: found by its SHA-256
    bad_mean = demo_workspace.meta["teacher"] | {"source": "../teacher.pt", "mean": [0.5]}
    with pytest.raises(TeacherError, match="recorded preprocessing is unusable: Got image_size 64, mean \\[0.5\\]"):
        teacher_from_workspace(workspace(bad_mean))
    assert recorded_n_segments(workspace({})) == defaults.N_SEGMENTS


def test_the_app_finds_the_teacher_beside_the_workspace_or_where_recorded_inside_the_allowed_roots(tiny_clip, tmp_path):
    """The one lookup the Predict and Setup pages share: a TorchScript teacher kept with the user's
    models (not beside the workspace) is used where the workspace recorded it only when that folder
    is inside the folders the server may read, and only while its SHA-256 matches; one beside the
    workspace is used whatever the roots."""
    models, data = tmp_path / "models", tmp_path / "data"
    models.mkdir()
    csv = write_labelled_scenes(data, {f"img{i}": ("train", CLASSES[i % 2]) for i in range(3)})
    teacher_file = models / "mine.pt"
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(MeanColour()), str(teacher_file))
    images = load_folder(data / "images", csv)
    preprocessing = Preprocessing(16, (0.5,) * 3, (0.25,) * 3)
    teacher = create_teacher(teacher_file, images.classes, preprocessing=preprocessing)
    ws = extract(images, data / "workspaces" / "ws", tiny_clip, teacher, ["grass"], n_segments=4).workspace
    pixels = [load_rgb(ws.image_path(r)) for r in range(3)]
    not_found = re.escape(
        f"cannot rebuild its teacher here: no TorchScript file with SHA-256 {ws.meta['teacher']['sha256'][:12]}…"
    )

    # recorded inside an allowed root: found there, and it scores as it did at extraction
    assert find_teacher(ws, roots=[tmp_path]) == str(teacher_file.resolve())
    rebuilt = teacher_for_workspace(ws, roots=[tmp_path], clip=tiny_clip)
    assert rebuilt.source == str(teacher_file.resolve()) and rebuilt.preprocessing == preprocessing
    np.testing.assert_allclose(rebuilt.logits(pixels), ws.teacher_logits, atol=1e-3)
    # recorded outside every root (none at all, or only the data folder): not looked for there
    for roots in ([], [data]):
        assert find_teacher(ws, roots=roots) is None
        with pytest.raises(TeacherError, match=not_found):
            teacher_for_workspace(ws, roots=roots, clip=tiny_clip)
    # beside the workspace (in the folder holding it): found with no root at all
    beside = shutil.copy(teacher_file, data / "workspaces" / "teacher.pt")
    assert find_teacher(ws) == str(beside)
    assert teacher_for_workspace(ws, clip=tiny_clip).source == str(beside)
    Path(beside).unlink()
    # another file at the recorded path, inside a root: its SHA-256 differs, so it is not the teacher
    teacher_file.write_bytes(teacher_file.read_bytes() + b"changed")
    assert find_teacher(ws, roots=[tmp_path]) is None
    with pytest.raises(TeacherError, match=not_found):
        teacher_for_workspace(ws, roots=[tmp_path], clip=tiny_clip)


def test_a_clip_zero_shot_workspace_rebuilds_with_its_own_clip_only(tiny_clip, tmp_path):
    csv = write_labelled_scenes(tmp_path, {f"img{i}": ("train", CLASSES[i % 2]) for i in range(3)})
    images = load_folder(tmp_path / "images", csv)
    ws = extract(
        images,
        tmp_path / "ws",
        tiny_clip,
        create_teacher("clip-zero-shot", images.classes, clip=tiny_clip),
        ["red square", "grass"],
        n_segments=8,
    ).workspace
    assert recorded_teacher_spec(ws) == "clip-zero-shot"
    teacher = teacher_from_workspace(ws, clip=tiny_clip)
    logits = teacher.logits([load_rgb(ws.image_path(r)) for r in range(3)])
    np.testing.assert_allclose(logits, ws.teacher_logits, atol=1e-3)
    other_config, other_weights = make_tiny_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(TeacherError, match="its clip-zero-shot teacher is the CLIP it recorded, tiny-vit-test"):
        teacher_from_workspace(ws, clip=load_clip(str(other_config), checkpoint=other_weights))


def test_one_normalisation_for_pil_images_and_squared_arrays():
    image = load_rgb(sorted((DEMO_DIR / "images").iterdir())[0])
    squared = np.asarray(image.resize((48, 48)))  # Pillow's default resize is bicubic
    clip = Preprocessing(48, defaults.CLIP_MEAN, defaults.CLIP_STD)
    by_pil = clip.to_tensor([image], resample=Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(by_pil.numpy(), to_tensor([squared], 48, clip.mean, clip.std).numpy())
    expected = (squared.astype(np.float32) / 255 - np.float32(defaults.CLIP_MEAN)) / np.float32(defaults.CLIP_STD)
    np.testing.assert_allclose(by_pil[0].permute(1, 2, 0).numpy(), expected, rtol=1e-6, atol=1e-6)
    open_clip = import_open_clip()
    assert (defaults.CLIP_MEAN, defaults.CLIP_STD) == (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)


def test_browsing_modules_do_not_import_torch():
    code = (
        "import sys, conceptkd_core.images, conceptkd_core.extract.teacher_registry, "
        "conceptkd_core.extract.add_images, conceptkd_core.extract.rescore; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------------- preprocessing as data (issue 18)
def _extract_args(*flags: str):
    from conceptkd_core.cli_arguments import build_parser

    images = str(DEMO_DIR / "images")
    return build_parser().parse_args(["extract", "--images", images, "--out", "unused", *flags])


def test_the_demo_teacher_through_the_generic_path_with_its_flags_reproduces_the_shipped_logits(demo_workspace):
    from conceptkd_core.cli import teacher_settings
    from conceptkd_core.extract.pipeline import ExtractorSpec
    from conceptkd_core.extract.rescore import workspace_images

    rows = [0, 1, 2, 3, 400, 799]
    images = [load_rgb(demo_workspace.image_path(r)) for r in rows]
    ids = [demo_workspace.image_ids[r] for r in rows]
    teacher_file = str(DEMO_DIR / "teacher.pt")
    flags = ("--teacher", teacher_file, "--teacher-image-size", "64", "--teacher-mean", "0.5", "--teacher-std", "0.25")
    preprocessing, classes = teacher_settings(_extract_args(*flags))
    assert preprocessing == TEACHER_PREPROCESSING and classes is None
    spec = ExtractorSpec(teacher=teacher_file, teacher_preprocessing=preprocessing)
    teacher = spec.make_teacher(None, workspace_images(demo_workspace))
    np.testing.assert_allclose(teacher.logits(images, ids), demo_workspace.teacher_logits[rows], atol=1e-4)
    assert teacher.identity | {"source": None} == demo_workspace.meta["teacher"] | {"source": None}
    # Without the flags the file says nothing, so ImageNet's 224 px is used: other logits (the bug).
    default, _ = teacher_settings(_extract_args("--teacher", teacher_file))
    assert default == IMAGENET
    wrong = ExtractorSpec(teacher=teacher_file).make_teacher(None, workspace_images(demo_workspace))
    assert np.abs(wrong.logits(images, ids) - demo_workspace.teacher_logits[rows]).max() > 0.5


def test_a_torchscript_file_names_its_own_preprocessing_and_output_order(tmp_path):
    import json

    path = tmp_path / "teacher.pt"
    said = {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "resize": "letterbox"}
    said["classes"] = ["dog", "cow", "cat"]
    model = torch.jit.script(MeanColour3())
    torch.jit.save(model, str(path), _extra_files={"preprocessing.json": json.dumps(said)})
    teacher = create_teacher(path, CLASSES)
    assert teacher.preprocessing == Preprocessing(32, (0.5,) * 3, (0.25,) * 3, "letterbox")
    assert teacher.identity["resize"] == "letterbox" and teacher.identity["output_classes"] == said["classes"]
    images = [load_rgb(p) for p in sorted((DEMO_DIR / "images").iterdir())[:2]]
    with torch.inference_mode():
        raw = model(teacher.preprocessing.to_tensor(images)).numpy()
    np.testing.assert_array_equal(teacher.logits(images), raw[:, [2, 0]])  # cat, dog from the outputs' order
    flags = ("--teacher", str(path), "--teacher-image-size", "48", "--teacher-resize", "center-crop")
    from conceptkd_core.cli import teacher_settings

    preprocessing, _ = teacher_settings(_extract_args(*flags))  # a flag beats the file; the rest is the file's
    assert preprocessing == Preprocessing(48, (0.5,) * 3, (0.25,) * 3, "center-crop")
    with pytest.raises(TeacherError, match=r"no output for classes \['cat'\]"):
        create_teacher(path, CLASSES, output_classes=["dog", "cow"])


class MeanColour3(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_resize_modes_keep_or_drop_the_aspect_ratio():
    from conceptkd_core.images import make_square

    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10] = 255  # a white band on the left quarter
    squash = make_square(wide, 20, "squash", Image.Resampling.NEAREST)
    crop = make_square(wide, 20, "center-crop", Image.Resampling.NEAREST)
    box = make_square(wide, 20, "letterbox", Image.Resampling.NEAREST, pad=(0.5, 0.5, 0.5))
    assert squash.shape == crop.shape == box.shape == (20, 20, 3)
    assert squash[:, :5].min() == 255 and squash[:, 5:].max() == 0  # the band squeezed to a quarter
    assert crop.max() == 0  # the middle square misses the band
    assert (box[:5] == 128).all() and (box[15:] == 128).all() and box[5:15, :5].min() == 255
    assert Preprocessing(20, (0.5,) * 3, (1,) * 3).identity == {"image_size": 20, "mean": [0.5] * 3, "std": [1.0] * 3}
    with pytest.raises(ValueError, match="Got resize 'stretch'; expected one of squash, center-crop, letterbox"):
        Preprocessing(20, (0.5,) * 3, (1,) * 3, "stretch")


def test_teacher_flags_are_refused_for_teachers_that_read_no_pixels_of_their_own(capsys):
    from conceptkd_core.cli import main

    status = main(["extract", "--images", str(DEMO_DIR / "images"), "--out", "x", "--teacher-mean", "0.5"])
    assert status == 2
    assert (
        "--teacher-mean: applies to a TorchScript teacher only; --teacher is 'clip-zero-shot'"
        in capsys.readouterr().err
    )
    status = main(["extract", "--images", str(DEMO_DIR / "images"), "--out", "x", "--teacher-std", "0,1,1"])
    assert status == 2 and "expected positive numbers" in capsys.readouterr().err
