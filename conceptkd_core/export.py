"""Exported students: a self-contained, explainable model folder, written and read here only.

``export_students`` writes, from a workspace and its (tuned) students:

* ``dense.pt``: TorchScript of ``extract.dense_model.ConceptModel`` for the concepts the students
  use (image + segment map -> concept scores -> class scores); it needs torch only;
* ``model.json``: classes, the concepts used, the sparse heads (weights, intercepts, target,
  decision threshold), CLIP's identity and preprocessing, the segmentation, the teacher's
  identity, the model card's figures and every other file's SHA-256;
* ``concept_embeddings.npy``: the text embeddings of those concepts (m_used, D) float32;
* ``vocabulary.txt``: the workspace's whole vocabulary; ``MODEL_CARD.md``: the card in words.

``load_export`` reads such a folder back, checking every file against ``model.json``, and
``ExportedStudents.predict`` scores images: SLIC segments on the CLIP-sized image (as extraction
cut them), the TorchScript file for the concept scores, the heads for each class's score and the
concepts behind it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store.atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_npy, atomic_write_text, sha256_file
from .store.strict_json import StrictJSONError, loads_strict
from .vocabulary import read_vocabulary_text, vocabulary_text

FORMAT, VERSION = "conceptkd-student", 1
MODEL_FILE, DENSE_FILE, EMBEDDINGS_FILE = "model.json", "dense.pt", "concept_embeddings.npy"
VOCABULARY_FILE, CARD_FILE = "vocabulary.txt", "MODEL_CARD.md"
SLIC_COMPACTNESS = 12.0  # segments.superpixels' default: recorded so another SLIC can cut alike
TOP_CONCEPTS = 5


class ExportError(ValueError):
    """An exported folder that cannot be used, or a workspace that cannot be exported; one line."""


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    concepts_used: int
    bytes: dict  # {file name: size}

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


# ----------------------------------------------------------------------------- writing
def export_students(explorer, session, clip, out: str | os.PathLike, tuning_log: bytes | None = None) -> ExportSummary:
    """Write ``session``'s students over ``explorer``'s workspace into the folder ``out``.

    clip : the workspace's own CLIP (``predict.workspace_clip``); its vision tower goes into
        ``dense.pt`` and its text tower makes the concept embeddings
    tuning_log : the session file the students came from (its SHA-256 goes into the card);
        None for the base students
    """
    import torch

    from .explorer import metrics_summary, metrics_table
    from .extract.clip_backend import encode_text_prompts, to_model_input
    from .extract.dense_model import concept_model
    from .extract.segments import recorded_n_segments, recorded_superpixel_size, superpixels
    from .images import square_resize
    from .students.metrics import DECISION_THRESHOLD

    workspace, bank = explorer.workspace, session.bank
    used = np.flatnonzero((bank.coef_ != 0).any(axis=0))
    if used.size == 0:
        raise ExportError("the students use no concept (every weight is 0); nothing to export")
    words = [workspace.vocabulary[j] for j in used]
    text = encode_text_prompts(clip, words)
    weights, intercepts = bank.coef_[:, used], bank.intercept_
    model = concept_model(clip, text, weights, intercepts)
    # Traced on a real image of the workspace (its segments); the batch size stays free.
    pixels = square_resize(_first_readable(workspace), clip.image_size)
    example = (to_model_input(clip, [pixels]), torch.from_numpy(superpixels(pixels, 4))[None])
    with torch.inference_mode():
        traced = torch.jit.trace(model, example, check_trace=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / DENSE_FILE, torchscript_without_paths(traced))
    atomic_write_npy(out / EMBEDDINGS_FILE, text.astype(np.float32))
    atomic_write_text(out / VOCABULARY_FILE, vocabulary_text(workspace.vocabulary))
    p = DECISION_THRESHOLD
    table = metrics_table(explorer, session)
    figures = metrics_summary(explorer, session)
    card = {
        "held_out_images": figures["n_held_out"],
        "fit_images": figures["n_fit"],
        "split_rule": figures["split_rule"],
        "held_out_per_class": _records(table.drop(columns=["student_ap_in_sample"])),
        "in_sample_student_ap_per_class": _records(table[["class", "student_ap_in_sample"]]),
        "concepts_per_class": {
            c: {workspace.vocabulary[j]: float(bank.coef_[i, j]) for j in np.flatnonzero(bank.coef_[i])}
            for i, c in enumerate(workspace.classes)
        },
        "tuning_log_sha256": None if tuning_log is None else hashlib.sha256(tuning_log).hexdigest(),
        "tuning_edits": int(session.cursor),
    }
    document = {
        "format": FORMAT,
        "version": VERSION,
        "classes": list(workspace.classes),
        "concepts": words,
        "heads": {
            "weights": weights.tolist(),
            "intercepts": intercepts.tolist(),
            "target": bank.target,
            "threshold": float(np.log(p / (1 - p))) if bank.target == "logits" else p,
        },
        "clip": workspace.meta["model"] | {"mean": list(clip.mean), "std": list(clip.std), "resize": "squash"},
        "segments": {
            "method": "slic",
            "n_segments": recorded_n_segments(workspace),
            "compactness": SLIC_COMPACTNESS,
            "superpixel_size": recorded_superpixel_size(workspace, clip.image_size),
        },
        "teacher": {k: v for k, v in workspace.meta.get("teacher", {}).items() if k != "source"},
        "workspace_id": workspace.workspace_id,
        "vocabulary_sha256": workspace.vocabulary_sha256,
        "card": card,
    }
    atomic_write_text(out / CARD_FILE, _card_text(document))
    document["files"] = {
        name: sha256_file(out / name) for name in (DENSE_FILE, EMBEDDINGS_FILE, VOCABULARY_FILE, CARD_FILE)
    }
    atomic_write_json(out / MODEL_FILE, document)
    sizes = {name: (out / name).stat().st_size for name in (MODEL_FILE, *document["files"])}
    return ExportSummary(out, int(used.size), sizes)


def _first_readable(workspace):
    from .images import ImageError, load_rgb

    for row in range(min(workspace.n_images, 50)):
        try:
            return load_rgb(workspace.image_path(row))
        except (ImageError, ValueError):
            continue
    raise ExportError(f"{workspace.root.name}: none of its first images can be read, so the model cannot be traced")


def _records(table) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
        for r in table.to_dict("records")
    ]


def torchscript_without_paths(module) -> bytes:
    """A TorchScript file without its debug records, which hold the source files' absolute paths."""
    import torch

    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    kept = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(kept, "w") as target:
        for member in source.infolist():
            if not member.filename.endswith(".debug_pkl"):
                target.writestr(member, source.read(member.filename))
    return kept.getvalue()


def _card_text(document: dict) -> str:
    card = document["card"]
    lines = [
        "# ConceptKD student model card",
        "",
        f"One sparse linear student per class ({len(document['classes'])} classes) over "
        f"{len(document['concepts'])} concept words scored by CLIP ({document['clip']['name']}) on "
        f"{document['segments']['n_segments']} SLIC segments per image; it mimics the teacher "
        f"({document['teacher'].get('kind')}).",
        "",
        f"Measured on {card['held_out_images']} held-out images the students were never fit on "
        f"({card['fit_images']} fit images; split: {card['split_rule']}). "
        "Chance AP is each class's share of positives.",
        "",
        "| class | positives | chance AP | teacher AP | student AP | balanced agreement | F1 vs teacher | concepts |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for r in card["held_out_per_class"]:
        lines.append(
            f"| {r['class']} | {r['positives']} | {fmt(r['chance_ap'])} | {fmt(r['teacher_ap'])} | "
            f"{fmt(r['student_ap'])} | {fmt(r['balanced_agreement'])} | {fmt(r['decision_f1'])} | "
            f"{r['concepts_used']} |"
        )
    lines += ["", "## Concepts per class (weight)", ""]
    for name, weights in card["concepts_per_class"].items():
        top = sorted(weights.items(), key=lambda kv: -abs(kv[1]))
        lines.append(f"- **{name}**: " + ", ".join(f"{w} ({v:+.3f})" for w, v in top))
    log = card["tuning_log_sha256"] or "none (the base students, untuned)"
    lines += ["", f"Tuning log SHA-256: {log}; edits: {card['tuning_edits']}", ""]
    return "\n".join(lines)


def export_zip(folder: str | os.PathLike) -> bytes:
    """The exported folder as one zip (the Students page's download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(folder).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, f"conceptkd-student/{path.name}")
    return buffer.getvalue()


def export_as_zip(explorer, session, clip) -> bytes:
    """``export_students`` of this session into a temporary folder, returned as one zip (the
    Students page's download); the tuning log is the session's own file."""
    import tempfile

    log = session.export_json().encode("utf-8") if session.cursor else None
    with tempfile.TemporaryDirectory() as folder:
        export_students(explorer, session, clip, Path(folder) / "model", tuning_log=log)
        return export_zip(Path(folder) / "model")


# ----------------------------------------------------------------------------- reading
@dataclass
class ExportedStudents:
    """An exported folder, checked: the heads in numpy, the dense path as a TorchScript module."""

    folder: Path
    document: dict
    weights: np.ndarray  # (k, m_used)
    intercepts: np.ndarray  # (k,)
    dense: object  # torch.jit.ScriptModule

    @property
    def classes(self) -> list[str]:
        return self.document["classes"]

    @property
    def concepts(self) -> list[str]:
        return self.document["concepts"]

    def model_inputs(self, image):
        """(pixels (1, 3, S, S), segments (1, S, S)) of one PIL image, as extraction prepared it."""
        import torch

        from .extract.segments import superpixels
        from .images import square_resize, to_tensor

        clip = self.document["clip"]
        pixels = square_resize(image, clip["image_size"])
        cut = self.document["segments"]
        segments = superpixels(pixels, cut["n_segments"], cut["compactness"], cut.get("superpixel_size"))
        tensor = to_tensor([pixels], clip["image_size"], clip["mean"], clip["std"])
        return tensor, torch.from_numpy(segments)[None]

    def predict(self, image, top: int = TOP_CONCEPTS) -> dict:
        """One image's class scores, probabilities and, per class, the ``top`` concepts behind its
        score (weight × concept score, largest |contribution| first); the TorchScript file's own
        class scores beside them (``dense_scores``), which must agree."""
        import torch

        with torch.inference_mode():
            concepts, dense_scores, _ = self.dense(*self.model_inputs(image))
        x = concepts[0].double().numpy()
        contributions = self.weights * x[None, :]
        scores = self.intercepts + contributions.sum(axis=1)
        heads = self.document["heads"]
        probabilities = 1 / (1 + np.exp(-scores)) if heads["target"] == "logits" else np.clip(scores, 0, 1)
        explained = {}
        for c, name in enumerate(self.classes):
            order = [j for j in np.argsort(-np.abs(contributions[c]), kind="stable") if contributions[c, j] != 0][:top]
            explained[name] = [
                {"concept": self.concepts[j], "score": float(x[j]), "contribution": float(contributions[c, j])}
                for j in order
            ]
        return {
            "scores": dict(zip(self.classes, map(float, scores), strict=True)),
            "probabilities": dict(zip(self.classes, map(float, probabilities), strict=True)),
            "says_yes": [c for c, s in zip(self.classes, scores, strict=True) if s > heads["threshold"]],
            "top_concepts": explained,
            "dense_scores": dict(zip(self.classes, map(float, dense_scores[0].double().numpy()), strict=True)),
        }


def load_export(folder: str | os.PathLike) -> ExportedStudents:
    """Read an exported folder, refusing (ExportError, one line) anything that does not check out."""
    folder = Path(folder)
    try:
        document = loads_strict((folder / MODEL_FILE).read_bytes(), 64 * 2**20)
    except OSError as exc:
        raise ExportError(
            f"{folder}: no readable {MODEL_FILE} ({exc.strerror or exc}); expected an exported student"
        ) from None
    except StrictJSONError as exc:
        raise ExportError(f"{folder / MODEL_FILE}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise ExportError(f"{folder / MODEL_FILE}: not a {FORMAT} version {VERSION} file")
    for name, digest in (document.get("files") or {}).items():
        path = folder / Path(str(name)).name
        if not path.is_file() or sha256_file(path) != digest:
            raise ExportError(f"{path}: missing or changed since export (its SHA-256 differs from {MODEL_FILE}'s)")
    if set(document.get("files") or {}) != {DENSE_FILE, EMBEDDINGS_FILE, VOCABULARY_FILE, CARD_FILE}:
        raise ExportError(
            f"{folder / MODEL_FILE}: lists files {sorted(document.get('files') or {})}; expected the four exported"
        )
    try:
        classes, concepts, heads = document["classes"], document["concepts"], document["heads"]
        weights = np.asarray(heads["weights"], dtype=np.float64)
        intercepts = np.asarray(heads["intercepts"], dtype=np.float64)
        embeddings = np.load(folder / EMBEDDINGS_FILE, allow_pickle=False)
        vocabulary = read_vocabulary_text((folder / VOCABULARY_FILE).read_text("utf-8")).words
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{folder / MODEL_FILE}: malformed ({exc})") from None
    k, m = len(classes), len(concepts)
    if weights.shape != (k, m) or intercepts.shape != (k,) or embeddings.shape[0] != m:
        raise ExportError(
            f"{folder}: heads {weights.shape} / {intercepts.shape} and embeddings {embeddings.shape} do not fit "
            f"{k} classes x {m} concepts"
        )
    _check_superpixel_size(document, folder / MODEL_FILE)
    if not set(concepts) <= set(vocabulary):
        raise ExportError(
            f"{folder}: concepts outside its vocabulary, e.g. {sorted(set(concepts) - set(vocabulary))[:3]}"
        )
    import torch

    dense = torch.jit.load(str(folder / DENSE_FILE), map_location="cpu").eval()
    return ExportedStudents(folder, document, weights, intercepts, dense)


def _check_superpixel_size(document: dict, where: Path) -> None:
    """The side superpixels are cut at, when recorded (exports from before it was cut at the model's size)."""
    from .defaults import MIN_SUPERPIXEL_SIZE

    segments, clip = document.get("segments"), document.get("clip")
    cut = segments.get("superpixel_size") if isinstance(segments, dict) else None
    size = clip.get("image_size") if isinstance(clip, dict) else None
    if cut is None:
        return
    if isinstance(cut, bool) or not isinstance(cut, int) or not MIN_SUPERPIXEL_SIZE <= cut <= (size or cut):
        raise ExportError(
            f"{where}: superpixel_size {repr(cut)[:20]}; expected whole pixels from {MIN_SUPERPIXEL_SIZE} "
            f"to the model's input size ({size})"
        )


# ----------------------------------------------------------------------------- the bench
def latency_bench(exported: ExportedStudents, teacher, images: Sequence, repeats: int = 1) -> dict:
    """Per-image seconds (median over ``images``, one at a time) of the exported student (SLIC +
    TorchScript + heads) and of ``teacher`` (None: not measured), and the sizes beside them."""

    def median_seconds(run) -> float:
        times = []
        for image in images:
            for _ in range(repeats):
                t0 = time.perf_counter()
                run(image)
                times.append(time.perf_counter() - t0)
        return float(np.median(times))

    result = {
        "student_s_per_image": round(median_seconds(exported.predict), 4),
        "export_bytes": sum(p.stat().st_size for p in exported.folder.iterdir() if p.is_file()),
    }
    if teacher is not None:
        result["teacher_s_per_image"] = round(median_seconds(lambda im: teacher.logits([im], ["bench"])), 4)
        source = getattr(teacher, "source", None)
        result["teacher_bytes"] = Path(source).stat().st_size if source else None
    return result


def prediction_line(name: str, prediction: dict) -> str:
    """The JSON line ``student predict`` prints for one image."""
    return json.dumps({"image": name} | {k: v for k, v in prediction.items() if k != "dense_scores"})
