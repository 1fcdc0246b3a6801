"""Command line: ``python -m conceptkd_core <command>``. Run with ``-h`` for the commands.

Every failure is one line on stderr that starts with ``error:`` and names the bad value and what
is allowed. Exit status: 0 done, 2 a usage error (an argument out of range, a path of the wrong
kind, a device this machine does not have), 1 a failure while running (a file that cannot be
read or used, weights that cannot be loaded, ...), 130 interrupted. No traceback is shown unless
``--debug`` is given after the command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .cli_arguments import DEMO_FILES, MAX_MESSAGE, UsageError, build_parser


# ----------------------------------------------------------------------------- checks that need the machine
def check_device(device: str) -> None:
    """Refuse a device this machine does not have (imports torch: only for a device other than cpu)."""
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            have = "no CUDA GPU" if not count else f"{count} CUDA GPU(s), cuda:0..cuda:{count - 1}"
            raise UsageError(f"argument --device: {device!r}: this machine has {have}; allowed here: cpu")
    elif not torch.backends.mps.is_available():
        raise UsageError(f"argument --device: {device!r}: Apple MPS is not available here; allowed here: cpu")


def _quiet_ray_logs() -> None:
    import logging

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)


TEACHER_FLAGS = ("image_size", "mean", "std", "resize")


def teacher_settings(args) -> tuple:
    """(preprocessing, output classes) of a TorchScript teacher from the --teacher-* flags, each
    unset value from the file's own record, else ImageNet's; (None, None) for other teachers,
    which refuse the flags (their pixels are CLIP's, or they read none)."""
    from .extract.teacher_registry import teacher_kind, teacher_preprocessing

    given = {name: getattr(args, f"teacher_{name}") for name in TEACHER_FLAGS}
    if teacher_kind(args.teacher) != "torch":
        named = [f"--teacher-{n.replace('_', '-')}" for n, v in given.items() if v is not None]
        named += ["--teacher-classes"] if args.teacher_classes else []
        if named:
            raise UsageError(
                f"argument {named[0]}: applies to a TorchScript teacher only; --teacher is {args.teacher!r}"
            )
        return None, None
    return teacher_preprocessing(args.teacher, **given), args.teacher_classes


# ----------------------------------------------------------------------------- commands
def run_extract(args) -> int:
    import dataclasses

    from tqdm import tqdm

    from .datasets import load_dataset
    from .extract.pipeline import ExtractorSpec, extract
    from .store.split import assign_heldout
    from .vocabulary import DEFAULT_VOCABULARY, read_vocabulary_file

    check_device(args.device)
    teacher_preprocessing, teacher_classes = teacher_settings(args)  # refused flags before any work
    dataset = load_dataset(args.images, args.labels, args.splits)
    images = dataset.subset(range(min(args.limit, len(dataset)))) if args.limit else dataset
    # Recorded in the workspace: the split the students are fit and measured on (store.split).
    images = dataclasses.replace(images, splits=assign_heldout(images.splits, images.labels))
    vocabulary = read_vocabulary_file(args.vocabulary or DEFAULT_VOCABULARY)
    if vocabulary.duplicates:
        shown = ", ".join(repr(w) for w in vocabulary.duplicates[:5])
        more = f" and {len(vocabulary.duplicates) - 5} more" if len(vocabulary.duplicates) > 5 else ""
        print(
            f"note: {len(vocabulary.duplicates)} duplicate words dropped from the vocabulary: {shown}{more}",
            file=sys.stderr,
        )
    spec = ExtractorSpec(
        args.model,
        args.pretrained,
        str(args.checkpoint) if args.checkpoint else None,
        args.teacher,
        args.device,
        teacher_preprocessing,
        teacher_classes,
    )
    clip = spec.load_clip()
    teacher = spec.make_teacher(clip, images)
    if hasattr(teacher, "check_known"):  # a logits file: refuse rows for images the labels do not list
        teacher.check_known(dataset.image_ids)
    engine = None
    if args.engine == "ray":
        from .extract.ray_engine import RayEngine

        _quiet_ray_logs()
        engine = RayEngine(
            spec,
            address=args.address,
            num_actors=args.actors,
            num_gpus=args.gpus_per_actor,
            num_cpus=args.cpus_per_actor,
            ship_code=args.ship_code,
        )
    print(
        f"{len(images)} images, {len(images.classes)} classes, {len(vocabulary.words)} concepts, model {clip.name}, "
        f"engine {args.engine}",
        flush=True,
    )
    bars = []  # the progress bar appears with the first finished batch (none when nothing is computed)

    def progress(p):
        if not bars:
            bars.append(tqdm(total=len(images), unit="img", dynamic_ncols=True))
        bars[0].n = p.done
        bars[0].set_postfix(skipped=p.skipped)
        bars[0].refresh()

    try:
        result = extract(
            images,
            args.out,
            clip,
            teacher,
            vocabulary.words,
            batch_size=args.batch_size,
            n_segments=args.segments,
            segmenter=args.segmenter,
            superpixel_size=args.superpixel_size,
            progress=progress,
            engine=engine,
            overwrite=args.overwrite,
        )
    finally:
        for bar in bars:
            bar.close()
    if result.up_to_date:
        print(
            f"up to date: {result.workspace.root} already holds these {result.workspace.n_images} images extracted "
            "with these settings; nothing to do (--overwrite extracts them again)"
        )
        return 0
    print(
        f"{result.workspace.n_images} images extracted, {len(result.failures)} skipped "
        f"(computed {result.computed}, resumed {result.resumed}) -> {result.workspace.root}"
    )
    for failure in result.failures[:20]:
        print(f"  skipped {failure['image_id']}: {failure['error']}")
    if len(result.failures) > 20:
        print(f"  ... and {len(result.failures) - 20} more, listed in extraction_report.json")
    return 0


def run_gram(args) -> int:
    import time

    from .explorer import fit_split, workspace_stats
    from .store.side_files import GRAM_FILE
    from .store.workspace import load_workspace

    workspace = load_workspace(args.workspace)
    t0 = time.perf_counter()
    if args.engine == "ray":
        from .extract.ray_engine import gram_stats_on_ray
        from .store.workspace import CONCEPTS_FILE

        _quiet_ray_logs()
        fit = fit_split(workspace).fit  # the students' fit images, as the local build takes them
        stats = workspace_stats(
            workspace,
            rebuild=True,
            build=lambda: gram_stats_on_ray(
                workspace.root / CONCEPTS_FILE,
                workspace.teacher_logits,
                address=args.address,
                ship_code=args.ship_code,
                rows=fit,
            ),
        )
    else:
        stats = workspace_stats(workspace, rebuild=True)
    print(
        f"Gram statistics of {stats.n_samples} images x {stats.gram.shape[0]} concepts built in "
        f"{time.perf_counter() - t0:.1f} s ({args.engine}) -> {workspace.root / GRAM_FILE}"
    )
    return 0


def _clip_training_options(args) -> dict:
    """How the mini CLIP trains: the options ``cli_arguments._clip_training_arguments`` adds to
    both ``demo build`` and ``demo train-clip``."""
    names = ("batch_size", "device", "workers", "max_minutes", "checkpoint_minutes")
    return {name: getattr(args, name) for name in names}


def run_demo(args) -> int:
    import json

    from conceptkd_tools import demo

    if args.demo_command == "build":
        if args.single > args.test:
            raise UsageError(f"argument --single: {args.single} is more than --test {args.test}; expected <= --test")
        result = demo.build(
            args.out or demo.DEMO_DIR,
            clip_scenes=args.clip_scenes,
            teacher_minutes=args.teacher_minutes,
            n_val=args.val,
            n_test=args.test,
            n_single=args.single,
            seed=args.seed,
            **_clip_training_options(args),
        )
    elif args.demo_command == "train-clip":
        from conceptkd_core.datasets import VOC_CLASSES
        from conceptkd_tools.demo_scenes import load_sprites

        result = demo.train_clip_into(
            args.out or demo.DEMO_DIR,
            load_sprites(VOC_CLASSES, args.seed),
            args.clip_scenes,
            seed=args.seed,
            **_clip_training_options(args),
        )
    else:
        from conceptkd_tools.demo_ablations import ablate

        flag, folder_ = ("--out", args.out) if args.demo_command == "extract" else ("--demo", args.demo)
        folder_ = Path(folder_ or demo.DEMO_DIR)
        needed = DEMO_FILES + ("teacher.pt",) if args.demo_command == "extract" else DEMO_FILES + ("workspace",)
        missing = [name for name in needed if not (folder_ / name).exists()]
        if missing:
            raise UsageError(f"argument {flag}: {str(folder_)!r} is not a demo folder (no {', '.join(missing)})")
        run = {"extract": demo.extract_and_evaluate, "eval": demo.evaluate, "ablate": ablate}[args.demo_command]
        result = run(folder_)
    print(json.dumps(result), flush=True)
    return 0


def run_bench(args) -> int:
    from conceptkd_tools import bench

    if args.benchmark == "refit":
        names = ("n_images", "n_concepts", "n_classes", "alpha", "moves", "seed")
        bench.run("refit", **{name: getattr(args, name) for name in names})
    elif args.benchmark == "scale":
        names = ("sizes", "n_concepts", "n_classes", "moves", "session_moves")
        options = {name: getattr(args, name) for name in names}
        bench.run("scale", **options, folder=args.folder and str(args.folder), plot=args.plot and str(args.plot))
    elif args.benchmark == "app":
        bench.run("app", workspace=args.workspace and str(args.workspace), moves=args.moves)
    elif args.benchmark == "suggest":
        from conceptkd_tools import bench_suggest

        bench_suggest.run(args.workspace and str(args.workspace), args.synthetic_voc, args.folder and str(args.folder))
    else:
        check_device(args.device)
        from .extract.torch_compat import import_open_clip

        if args.model not in import_open_clip().list_models():
            raise UsageError(f"argument --model: {args.model!r}: not an open_clip model name; e.g. ViT-B-16, ViT-B-32")
        sizes = {"model_name": args.model, "batch_size": args.batch_size, "batches": args.batches}
        sizes["superpixel_size"] = args.superpixel_size
        bench.run("extract", device=args.device, workers=args.workers, segmenter=args.segmenter, **sizes)
    return 0


def run_student(args) -> int:
    import json

    from .export import load_export, prediction_line
    from .images import ImageError, load_rgb

    if args.student_command == "predict":
        exported = load_export(args.model)
        failed = 0
        for path in args.images:
            try:
                print(prediction_line(str(path), exported.predict(load_rgb(path), top=args.top)), flush=True)
            except ImageError as exc:
                failed += 1
                print(json.dumps({"image": str(path), "error": str(exc)}), flush=True)
        return 1 if failed else 0

    from .explorer import import_session, new_session, open_explorer
    from .export import export_students, latency_bench
    from .extract.teacher_registry import teacher_from_workspace
    from .extract.teachers import TeacherError
    from .predict import workspace_clip

    explorer = open_explorer(args.workspace)
    log = args.session.read_bytes() if args.session else None
    session = import_session(explorer, log) if log else new_session(explorer, autosave=False)
    summary = export_students(explorer, session, workspace_clip(explorer.workspace), args.out, tuning_log=log)
    result = {"out": str(summary.out), "concepts_used": summary.concepts_used, "files_bytes": summary.bytes}
    if args.bench:
        rows = explorer.shared.held_out_rows[: args.bench]
        images = [load_rgb(explorer.workspace.image_path(int(r))) for r in rows]
        try:
            teacher = teacher_from_workspace(explorer.workspace)
        except TeacherError as exc:
            teacher, result["teacher_not_measured"] = None, str(exc)
        result |= {"bench_images": len(images)} | latency_bench(load_export(summary.out), teacher, images)
    print(json.dumps(result), flush=True)
    return 0


COMMANDS = {"extract": run_extract, "gram": run_gram, "demo": run_demo, "bench": run_bench, "student": run_student}


# ----------------------------------------------------------------------------- errors
def _one_line(message: str) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE] + " …"


def _fail(message: str, status: int) -> int:
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except SystemExit as done:  # -h / --help
        return done.code if isinstance(done.code, int) else 0
    except UsageError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        interrupted = "interrupted"
        if argv[:1] == ["extract"]:
            interrupted += ": finished batches are kept; run the same command again to resume"
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, MemoryError):
            return _fail(f"out of memory ({exc or 'the sizes asked for do not fit'}); try smaller sizes", 1)
        if isinstance(exc, OSError) and exc.filename:
            return _fail(f"{exc.filename}: {exc.strerror or exc}", 1)
        if isinstance(exc, (ValueError, OSError, RuntimeError, ImportError)):
            return _fail(str(exc) or type(exc).__name__, 1)
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
