"""Command line: ``python -m conceptkd_core <command>``. Run with ``-h`` for the commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .defaults import DEFAULT_TEACHER, N_SEGMENTS, TEACHER_IMAGE_SIZE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conceptkd_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run a benchmark; prints one JSON line")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    refit = bench_sub.add_parser("refit", help="interactive re-fit vs scikit-learn Lasso at PASCAL VOC scale")
    refit.add_argument("--n-images", type=int, default=11540)
    refit.add_argument("--n-concepts", type=int, default=584)
    refit.add_argument("--n-classes", type=int, default=20)
    refit.add_argument("--alpha", type=float, default=1e-3)
    refit.add_argument("--moves", type=int, default=100)
    refit.add_argument("--seed", type=int, default=0)
    ext = bench_sub.add_parser("extract", help="dense extraction vs plain encode_image throughput")
    ext.add_argument("--model", default="ViT-B-16")
    ext.add_argument("--batch-size", type=int, default=8)
    ext.add_argument("--batches", type=int, default=4)
    ext.add_argument("--device", default="cpu")
    ext.add_argument("--workers", type=int, default=None, help="processes preparing images (default: by device)")
    scale = bench_sub.add_parser("scale", help="students at 10k..1M images: Gram build, re-fit, metrics after a move")
    scale.add_argument("--sizes", default="10000,100000,1000000", help="numbers of images, comma-separated")
    scale.add_argument("--n-concepts", type=int, default=584)
    scale.add_argument("--n-classes", type=int, default=20)
    scale.add_argument("--moves", type=int, default=100, help="slider moves timed through the solver")
    scale.add_argument(
        "--session-moves", type=int, default=20, help="of those, moves also timed through a tuning session"
    )
    scale.add_argument(
        "--folder", help="keep the synthetic workspaces here (reused by the next run); default: a temp folder"
    )
    scale.add_argument("--plot", help="write a log-log PNG of the results here")
    app = bench_sub.add_parser("app", help="page and slider timings, memory, on a workspace (default: the demo)")
    app.add_argument("--workspace", default=None)
    app.add_argument("--moves", type=int, default=10)
    extract = sub.add_parser("extract", help="images -> workspace (CLIP concept scores, segments, teacher logits)")
    extract.add_argument("--images", required=True, help="image folder, or a VOCdevkit/VOC2012 root")
    extract.add_argument("--labels", help="labels CSV for a folder of images (omit for the VOC layout)")
    extract.add_argument("--splits", default="train,val", help="VOC splits, comma-separated (default train,val)")
    extract.add_argument("--model", default="ViT-B-16", help="open_clip model name or JSON config path")
    weights = extract.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", help="open_clip pretrained tag, e.g. openai (needs internet once)")
    weights.add_argument("--checkpoint", help="local weights file (.safetensors or torch tensors)")
    extract.add_argument(
        "--teacher",
        default=DEFAULT_TEACHER,
        help="clip-zero-shot (default), a TorchScript file (.pt/.ts/.pth/.jit; ImageNet "
        f"preprocessing at {TEACHER_IMAGE_SIZE} px), or a logits file (.csv/.parquet/.npy)",
    )
    extract.add_argument("--vocabulary", help="concept words, one per line (default: the built-in 571-word list)")
    extract.add_argument("--out", required=True, help="workspace folder to create (or to resume)")
    extract.add_argument("--batch-size", type=int, default=16)
    extract.add_argument(
        "--segments", type=int, default=N_SEGMENTS, help=f"superpixels asked of SLIC per image (default {N_SEGMENTS})"
    )
    extract.add_argument("--device", default="cpu")
    extract.add_argument("--limit", type=int, help="only the first N images (a quick try)")
    extract.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a pool of Ray Data actors (pip install 'ray[data]')",
    )
    _ray_arguments(extract)
    extract.add_argument("--actors", type=int, help="Ray actors (default: cluster GPUs / --gpus-per-actor, else CPUs)")
    extract.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="GPUs per Ray actor; > 0 runs CLIP on cuda (default: 1 when the cluster has GPUs, else 0)",
    )
    extract.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per Ray actor (its torch threads)")
    gram = sub.add_parser("gram", help="build (or rebuild) a workspace's Gram statistics, cached in the workspace")
    gram.add_argument("workspace", help="workspace folder")
    gram.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: one Ray task per chunk of rows (the workspace must be on a path every node sees)",
    )
    _ray_arguments(gram)
    demo = sub.add_parser("demo", help="the embedded demo workspace (Clipart Scenes)")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    build = demo_sub.add_parser(
        "build", help="render scenes, train mini CLIP + teacher, extract (needs fonts-noto-color-emoji)"
    )
    build.add_argument("--out", default=None, help="folder (default data/demo)")
    build.add_argument("--clip-minutes", type=float, default=15.0)
    build.add_argument("--teacher-minutes", type=float, default=5.0)
    build.add_argument("--val", type=int, default=300)
    build.add_argument("--test", type=int, default=500)
    build.add_argument("--single", type=int, default=200, help="single-object scenes within the test split")
    build.add_argument("--seed", type=int, default=0)
    reextract = demo_sub.add_parser("extract", help="only the last build step: re-extract the workspace and re-measure")
    reextract.add_argument("--out", default=None, help="folder (default data/demo)")
    evaluate = demo_sub.add_parser("eval", help="measure the demo's goals; one JSON line")
    evaluate.add_argument("--demo", default=None, help="folder (default data/demo)")
    return parser


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        help="Ray cluster address for --engine ray (e.g. auto, ray://head:10001); "
        "default: the RAY_ADDRESS variable, else a Ray instance on this machine",
    )
    parser.add_argument(
        "--no-ship-code",
        dest="ship_code",
        action="store_false",
        help="do not send conceptkd_core to the Ray workers (they already have it installed)",
    )


def _quiet_ray_logs() -> None:
    import logging

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_extract(args) -> int:
    import dataclasses

    from tqdm import tqdm

    from .datasets import load_dataset
    from .extract.pipeline import ExtractorSpec, extract
    from .store.split import assign_heldout
    from .vocabulary import DEFAULT_VOCABULARY, load_vocabulary

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    images = load_dataset(args.images, args.labels, [s for s in args.splits.split(",") if s])
    if args.limit:
        images = images.subset(range(min(args.limit, len(images))))
    # Recorded in the workspace: the split the students are fit and measured on (store.split).
    images = dataclasses.replace(images, splits=assign_heldout(images.splits, images.labels))
    vocabulary = load_vocabulary(args.vocabulary or DEFAULT_VOCABULARY)
    spec = ExtractorSpec(args.model, args.pretrained, args.checkpoint, args.teacher, args.device)
    clip = spec.load_clip()
    teacher = spec.make_teacher(clip, images)
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
        f"{len(images)} images, {len(images.classes)} classes, {len(vocabulary)} concepts, model {clip.name}, "
        f"engine {args.engine}",
        flush=True,
    )
    bar = tqdm(total=len(images), unit="img", dynamic_ncols=True)

    def progress(p):
        bar.n = p.done
        bar.set_postfix(skipped=p.skipped)
        bar.refresh()

    try:
        result = extract(
            images,
            args.out,
            clip,
            teacher,
            vocabulary,
            batch_size=args.batch_size,
            n_segments=args.segments,
            progress=progress,
            engine=engine,
        )
    finally:
        bar.close()
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


def _reporting_errors(run, args, errors: tuple[type[BaseException], ...], interrupted: str = "interrupted") -> int:
    """Run a command; an expected error is one line on stderr and exit status 2, not a traceback."""
    try:
        return run(args)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "extract":
        from .datasets import DatasetError
        from .extract.clip_backend import ClipLoadError
        from .extract.pipeline import ExtractionError
        from .extract.ray_engine import RayUnavailable
        from .extract.teachers import TeacherError
        from .store.workspace import WorkspaceError
        from .vocabulary import VocabularyError

        return _reporting_errors(
            run_extract,
            args,
            (
                ClipLoadError,
                DatasetError,
                ExtractionError,
                TeacherError,
                VocabularyError,
                WorkspaceError,
                RayUnavailable,
                ValueError,
            ),
            "interrupted: finished batches are kept; run the same command again to resume",
        )
    if args.command == "gram":  # needs no torch: its own errors only
        from .extract.ray_engine import RayUnavailable
        from .store.workspace import WorkspaceError

        return _reporting_errors(run_gram, args, (WorkspaceError, RayUnavailable, ValueError))
    if args.command == "demo":
        import json

        from conceptkd_tools import demo

        if args.demo_command == "build":
            result = demo.build(
                args.out or demo.DEMO_DIR,
                clip_minutes=args.clip_minutes,
                teacher_minutes=args.teacher_minutes,
                n_val=args.val,
                n_test=args.test,
                n_single=args.single,
                seed=args.seed,
            )
        elif args.demo_command == "extract":
            result = demo.extract_and_evaluate(args.out or demo.DEMO_DIR)
        else:
            result = demo.evaluate(args.demo or demo.DEMO_DIR)
        print(json.dumps(result), flush=True)
        return 0
    if args.command == "bench":
        from conceptkd_tools import bench

        if args.benchmark == "refit":
            bench.run(
                "refit",
                n_images=args.n_images,
                n_concepts=args.n_concepts,
                n_classes=args.n_classes,
                alpha=args.alpha,
                moves=args.moves,
                seed=args.seed,
            )
        elif args.benchmark == "scale":
            bench.run(
                "scale",
                sizes=tuple(int(n) for n in args.sizes.split(",") if n),
                n_concepts=args.n_concepts,
                n_classes=args.n_classes,
                moves=args.moves,
                session_moves=args.session_moves,
                folder=args.folder,
                plot=args.plot,
            )
        elif args.benchmark == "app":
            bench.run("app", workspace=args.workspace, moves=args.moves)
        elif args.benchmark == "extract":
            sizes = {"model_name": args.model, "batch_size": args.batch_size, "batches": args.batches}
            bench.run("extract", device=args.device, workers=args.workers, **sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
