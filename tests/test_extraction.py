import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptkd_core.datasets import DatasetError, load_dataset, load_folder, load_voc
from conceptkd_core.extract.clip_backend import (
    ClipLoadError,
    concept_embeddings,
    dense_patch_features,
    encode_image,
    load_clip,
    to_model_input,
)
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.segments import concepts_for_image, superpixels
from conceptkd_core.extract.teachers import ClipZeroShotTeacher, LogitsFileTeacher, TeacherError
from conceptkd_core.images import ImageError, load_rgb, square_resize
from conceptkd_core.overlays import concept_overlay, label_overlay, segment_scores_for_concept
from conceptkd_core.store.side_files import read_segments
from conceptkd_core.store.workspace import load_workspace

from tiny_clip import make_tiny_checkpoint, write_labelled_scenes, write_scene

ROOT = Path(__file__).resolve().parent.parent
VOCAB = ["red square", "blue sky", "grass", "dog", "car", "tree"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    config, weights = make_tiny_checkpoint(folder)
    return config, weights, load_clip(str(config), checkpoint=weights)


@pytest.fixture
def folder_set(tmp_path):
    labels = {
        f"img{i}": ("train" if i < 5 else "test", f"{'cat' if i % 2 else 'dog'}{';cat' if i == 3 else ''}")
        for i in range(7)
    }
    return load_folder(tmp_path / "images", write_labelled_scenes(tmp_path, labels))


def reference_dense(model, images):
    """MaskCLIP dense features written out by hand from the weights, one image at a time."""
    v = model.visual
    sd = {k: t.double() for k, t in v.state_dict().items()}
    out = []

    def ln(x, name):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * sd[name + ".weight"] + sd[name + ".bias"]

    p = v.patch_size[0]
    for img in images.double():
        c, h, w = img.shape
        tokens = []
        for i in range(h // p):
            for j in range(w // p):
                patch = img[:, i * p : (i + 1) * p, j * p : (j + 1) * p].reshape(-1)
                tokens.append(sd["conv1.weight"].reshape(sd["conv1.weight"].shape[0], -1) @ patch)
        x = torch.stack([sd["class_embedding"]] + tokens) + sd["positional_embedding"]
        x = ln(x, "ln_pre")
        n_blocks = len(v.transformer.resblocks)
        width = x.shape[1]
        heads = v.transformer.resblocks[0].attn.num_heads
        for b in range(n_blocks):
            pre = f"transformer.resblocks.{b}."
            y = ln(x, pre + "ln_1")
            qkv = y @ sd[pre + "attn.in_proj_weight"].T + sd[pre + "attn.in_proj_bias"]
            q, k, val = qkv[:, :width], qkv[:, width : 2 * width], qkv[:, 2 * width :]
            if b == n_blocks - 1:  # value path only
                x = val @ sd[pre + "attn.out_proj.weight"].T + sd[pre + "attn.out_proj.bias"]
                break
            d = width // heads
            att = []
            for hh in range(heads):
                s = slice(hh * d, (hh + 1) * d)
                a = torch.softmax(q[:, s] @ k[:, s].T / d**0.5, dim=-1)
                att.append(a @ val[:, s])
            x = x + torch.cat(att, 1) @ sd[pre + "attn.out_proj.weight"].T + sd[pre + "attn.out_proj.bias"]
            y = ln(x, pre + "ln_2")
            hdn = torch.nn.functional.gelu(y @ sd[pre + "mlp.c_fc.weight"].T + sd[pre + "mlp.c_fc.bias"])
            x = x + hdn @ sd[pre + "mlp.c_proj.weight"].T + sd[pre + "mlp.c_proj.bias"]
        x = ln(x, "ln_post") @ sd["proj"]
        x = x[1:] / x[1:].norm(dim=-1, keepdim=True)
        g = h // p
        out.append(x.reshape(g, g, -1))
    return torch.stack(out)


def test_dense_features_match_a_reference_written_from_the_weights(tiny):
    _, _, clip = tiny
    torch.manual_seed(1)
    batch = torch.randn(2, 3, 64, 64)
    ours = dense_patch_features(clip, batch)
    assert ours.shape == (2, 4, 4, 32)
    np.testing.assert_allclose(ours.double().numpy(), reference_dense(clip.model, batch).numpy(), atol=2e-5)
    patches, global_emb = dense_patch_features(clip, batch, with_global=True)
    torch.testing.assert_close(patches, ours)
    torch.testing.assert_close(global_emb, encode_image(clip, batch), atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_gives_identical_outputs(tiny, tmp_path):
    config, weights, clip = tiny
    again = load_clip(str(config), checkpoint=weights)
    batch = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(encode_image(again, batch), encode_image(clip, batch), rtol=0, atol=0)
    assert again.identity == clip.identity and clip.checkpoint_sha256
    # the same weights as a torch tensor file, loaded with weights_only
    pt = tmp_path / "w.pt"
    torch.save(clip.model.state_dict(), pt)
    torch.testing.assert_close(encode_image(load_clip(str(config), checkpoint=pt), batch), encode_image(clip, batch))


def test_loading_errors_are_clear(tiny, tmp_path):
    config, weights, _ = tiny
    with pytest.raises(ClipLoadError, match="No weights given for 'ViT-B-16'.*--pretrained TAG or --checkpoint FILE"):
        load_clip("ViT-B-16")
    with pytest.raises(ClipLoadError, match="Checkpoint file not found"):
        load_clip(str(config), checkpoint=tmp_path / "none.safetensors")
    with pytest.raises(ClipLoadError, match="Unknown open_clip model 'ViT-Q-99'"):
        load_clip("ViT-Q-99", checkpoint=weights)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(ClipLoadError, match="weights_only"):
        load_clip(str(config), checkpoint=evil)
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(2, 2)}, wrong)
    with pytest.raises(ClipLoadError, match="does not fit"):
        load_clip(str(config), checkpoint=wrong)


def test_offline_pretrained_tag_fails_fast_with_instructions():
    import time

    t0 = time.time()
    with pytest.raises(ClipLoadError, match="Cannot download the .openai. weights.*--checkpoint FILE"):
        load_clip("ViT-B-32", pretrained="openai")
    assert time.time() - t0 < 30


def test_concept_vector_is_the_clipped_max_over_segments(tiny, folder_set):
    _, _, clip = tiny
    text = concept_embeddings(clip, VOCAB)
    image = square_resize(load_rgb(folder_set.absolute_path(0)), clip.image_size)
    labels = superpixels(image, 6)
    feats = dense_patch_features(clip, to_model_input(clip, [image]))[0].numpy()
    result = concepts_for_image(feats, labels, text)
    # slow reference: per segment, pool the patch features by pixel coverage
    seg_embs = []
    for s in range(labels.max() + 1):
        mask = labels == s
        acc = np.zeros(feats.shape[-1])
        for y in range(64):
            for x in range(64):
                if mask[y, x]:
                    acc += feats[y // 16, x // 16]
        seg_embs.append(acc / np.linalg.norm(acc))
    sims = np.array(seg_embs) @ text.T
    np.testing.assert_allclose(result.concept_vector, np.clip(sims.max(0), 0, None), atol=1e-5)
    assert (result.best_segment == sims.argmax(0)).all()
    scores = segment_scores_for_concept(
        2, float(result.concept_vector[2]), int(result.best_segment[2]), result.top_concepts, result.top_scores
    )
    overlay = concept_overlay(np.asarray(load_rgb(folder_set.absolute_path(0))), result.segment_map, scores)
    assert overlay.shape == (60, 80, 3) and overlay.dtype == np.uint8
    labelled, legend = label_overlay(
        np.asarray(load_rgb(folder_set.absolute_path(0))), result.segment_map, result.top_concepts, VOCAB
    )
    assert labelled.shape == (60, 80, 3) and set(legend) <= set(VOCAB) and legend


def test_extract_resume_and_corrupt_images(tiny, folder_set, tmp_path):
    _, _, clip = tiny
    (folder_set.root / "3.png").write_bytes(b"not a png at all")
    teacher = ClipZeroShotTeacher(clip, folder_set.classes)
    seen = []
    result = extract(folder_set, tmp_path / "ws", clip, teacher, VOCAB, batch_size=3, progress=seen.append)
    ws = result.workspace
    assert ws.n_images == 6 and "img3" not in ws.image_ids
    assert [f["image_id"] for f in result.failures] == ["img3"]
    assert seen[-1].done == 7 and seen[-1].skipped == 1 and seen[-1].images_per_s > 0
    report = json.loads((tmp_path / "ws" / "extraction_report.json").read_text())
    assert report["extracted"] == 6 and "not an image" in report["skipped"][0]["error"]
    segs = read_segments(load_workspace(tmp_path / "ws"))
    assert segs["segment_maps"].shape == (6, 56, 56)
    # concept vector in the workspace equals a direct computation for one image
    text = concept_embeddings(clip, VOCAB)
    image = square_resize(load_rgb(folder_set.absolute_path(0)), clip.image_size)
    direct = concepts_for_image(
        dense_patch_features(clip, to_model_input(clip, [image]))[0].numpy(), superpixels(image, 24), text
    ).concept_vector
    np.testing.assert_allclose(ws.concept_matrix[ws.row_of("img0")], direct, atol=1e-3)
    assert ws.meta["model"]["checkpoint_sha256"] == clip.checkpoint_sha256
    # the image root is recorded relative to the workspace, so moving both together keeps it working
    assert not Path(ws.meta["image_root"]).is_absolute()
    assert ws.image_path(ws.row_of("img0")) == folder_set.absolute_path(0)


def test_logits_file_teacher_validates_against_the_manifest(tmp_path, folder_set):
    csv = tmp_path / "logits.csv"
    csv.write_text("image_id,cat,dog\n" + "".join(f"img{i},{i},-{i}\n" for i in range(7)))
    teacher = LogitsFileTeacher(csv, folder_set.classes)
    np.testing.assert_array_equal(teacher.logits(None, ["img2"]), [[2.0, -2.0]])
    csv.write_text("image_id,cat\nimg0,1\n")
    with pytest.raises(TeacherError, match="no logits column for classes \\['dog'\\]"):
        LogitsFileTeacher(csv, folder_set.classes)
    csv.write_text("image_id,cat,dog\nimg0,1,nan\n")
    with pytest.raises(TeacherError, match="NaN or inf"):
        LogitsFileTeacher(csv, folder_set.classes)
    np.save(tmp_path / "l.npy", np.zeros((3, 5)))
    with pytest.raises(TeacherError, match="shape \\(3, 5\\); expected \\(7, 2\\)"):
        LogitsFileTeacher(tmp_path / "l.npy", folder_set.classes, image_ids=folder_set.image_ids)


def test_voc_layout(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    ids = ["2008_000001", "2008_000002", "2008_000003"]
    for i, name in enumerate(ids):
        write_scene(root / "JPEGImages" / f"{name}.jpg", i)
    (main / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (main / "val.txt").write_text(ids[2] + "\n")
    classes = ("cat", "dog")
    for c in classes:
        for split, members in (("train", ids[:2]), ("val", ids[2:])):
            lines = [f"{m} {'1' if (c == 'cat') == (m == ids[0]) else '-1'}" for m in members]
            (main / f"{c}_{split}.txt").write_text("\n".join(lines) + "\n")
    voc = load_voc(root, classes=classes)
    assert voc.image_ids == ids and voc.splits == ["train", "train", "val"]
    np.testing.assert_array_equal(voc.labels, [[1, 0], [0, 1], [0, 1]])
    (main / "dog_val.txt").unlink()
    with pytest.raises(DatasetError, match="missing ImageSets/Main/dog_val.txt"):
        load_voc(root, classes=classes)
    with pytest.raises(DatasetError, match="missing folder JPEGImages"):
        load_voc(tmp_path, classes=classes)
    with pytest.raises(DatasetError, match="give a labels CSV"):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("path,cat\na.png,1\n", "missing column 'image'"),
        ("image,cat\na.png,2\n", "label for image 'a.png', class 'cat' is '2'; expected 0 or 1"),
        ("image,cat\n../../etc/passwd,1\n", "'../../etc/passwd' \\(row 0\\) is not allowed"),
        ("image,image_id,cat\na.png,x,1\nb.png,x,0\n", "duplicate image id 'x'"),
    ],
)
def test_folder_csv_errors(tmp_path, csv_text, message):
    (tmp_path / "im").mkdir()
    (tmp_path / "l.csv").write_text(csv_text)
    with pytest.raises(DatasetError, match=message):
        load_folder(tmp_path / "im", tmp_path / "l.csv")


def test_bad_images_get_clear_messages(tmp_path):
    from PIL import Image

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_rgb(empty)
    good = tmp_path / "good.png"
    write_scene(good, 0)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_rgb(truncated)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)  # tiny file, 144 M pixels declared
    with pytest.raises(ImageError, match="pixel limit|decompression bomb"):
        load_rgb(bomb)
    for mode in ("CMYK", "L", "P", "RGBA", "I;16"):
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (10, 8)).save(path)
        assert load_rgb(path).mode == "RGB" and load_rgb(path).size == (10, 8)
    exif = Image.new("RGB", (10, 4)).getexif()
    exif[0x0112] = 6  # rotate 90° on display
    rotated = tmp_path / "rot.jpg"
    Image.new("RGB", (10, 4)).save(rotated, exif=exif)
    assert load_rgb(rotated).size == (4, 10)


def test_cli_extract_is_resumable_after_a_kill(tiny, folder_set, tmp_path):
    config, weights, _ = tiny
    out = tmp_path / "ws"
    cmd = [
        sys.executable,
        "-m",
        "conceptkd_core",
        "extract",
        "--images",
        str(folder_set.root),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--model",
        str(config),
        "--checkpoint",
        str(weights),
        "--teacher",
        "clip-zero-shot",
        "--vocabulary",
        str(ROOT / "conceptkd_core/vocabularies/davis2017.txt"),
        "--out",
        str(out),
        "--batch-size",
        "2",
    ]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "7 images extracted, 0 skipped" in first.stdout
    ws = load_workspace(out)
    baseline = np.asarray(ws.concept_matrix).copy()
    # Again into a fresh folder, SIGKILLed right after its second shard lands (deterministically:
    # the kill comes from inside the shard write); the rerun resumes.
    out2 = tmp_path / "ws2"
    cmd2 = cmd[:-3] + [str(out2), "--batch-size", "2"]
    killer = (
        "import os, signal, sys\n"
        "import conceptkd_core.extract.pipeline as ex\n"
        "from conceptkd_core.cli import main\n"
        "real, count = ex._write_shard, [0]\n"
        "def write_then_die(path, arrays):\n"
        "    real(path, arrays); count[0] += 1\n"
        "    if count[0] == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "ex._write_shard = write_then_die\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    killed = subprocess.run([sys.executable, "-c", killer] + cmd2[3:], cwd=ROOT, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    shards_before = {p.name for p in (out2 / ".extract").glob("shard-*.npz")}
    assert len(shards_before) == 2
    second = subprocess.run(cmd2, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "(computed 3, resumed 4)" in second.stdout
    np.testing.assert_array_equal(np.asarray(load_workspace(out2).concept_matrix), baseline)
