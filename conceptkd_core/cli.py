"""Command line: ``python -m conceptkd_core <command>``. Run with ``-h`` for the commands."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


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
    extract.add_argument("--teacher", default="clip-zero-shot",
                         help="clip-zero-shot (default), a TorchScript file (.pt/.ts), or a logits file (.csv/.parquet/.npy)")
    extract.add_argument("--vocabulary", help="concept words, one per line (default: data/vocabulary/default.txt)")
    extract.add_argument("--out", required=True, help="workspace folder to create (or to resume)")
    extract.add_argument("--batch-size", type=int, default=16)
    extract.add_argument("--segments", type=int, default=24, help="superpixels asked of SLIC per image")
    extract.add_argument("--device", default="cpu")
    extract.add_argument("--limit", type=int, help="only the first N images (a quick try)")
    demo = sub.add_parser("demo", help="the embedded demo workspace (Clipart Scenes)")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    build = demo_sub.add_parser("build", help="render scenes, train mini CLIP + teacher, extract (needs fonts-noto-color-emoji)")
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


def run_extract(args) -> int:
    from tqdm import tqdm

    from .datasets import load_dataset
    from .extraction import ExtractorSpec, extract
    from .vocabulary import DEFAULT_VOCABULARY, load_vocabulary

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    images = load_dataset(args.images, args.labels, [s for s in args.splits.split(",") if s])
    if args.limit:
        images = images.subset(range(min(args.limit, len(images))))
    vocabulary = load_vocabulary(args.vocabulary or DEFAULT_VOCABULARY)
    spec = ExtractorSpec(args.model, args.pretrained, args.checkpoint, args.teacher, args.device)
    clip = spec.load_clip()
    teacher = spec.make_teacher(clip, images)
    print(f"{len(images)} images, {len(images.classes)} classes, {len(vocabulary)} concepts, model {clip.name}", flush=True)
    bar = tqdm(total=len(images), unit="img", dynamic_ncols=True)

    def progress(p):
        bar.n = p.done
        bar.set_postfix(skipped=p.skipped)
        bar.refresh()

    try:
        result = extract(images, args.out, clip, teacher, vocabulary, batch_size=args.batch_size,
                         n_segments=args.segments, progress=progress)
    finally:
        bar.close()
    print(f"{result.workspace.n_images} images extracted, {len(result.failures)} skipped "
          f"(computed {result.computed}, resumed {result.resumed}) -> {result.workspace.root}")
    for failure in result.failures[:20]:
        print(f"  skipped {failure['image_id']}: {failure['error']}")
    if len(result.failures) > 20:
        print(f"  ... and {len(result.failures) - 20} more, listed in extraction_report.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "extract":
        from .clip_backend import ClipLoadError
        from .datasets import DatasetError
        from .extraction import ExtractionError
        from .teachers import TeacherError
        from .vocabulary import VocabularyError
        from .workspace import WorkspaceError

        try:
            return run_extract(args)
        except (ClipLoadError, DatasetError, ExtractionError, TeacherError, VocabularyError, WorkspaceError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: finished batches are kept; run the same command again to resume", file=sys.stderr)
            return 130
    if args.command == "demo":
        import json

        from . import demo

        if args.demo_command == "build":
            result = demo.build(args.out or demo.DEMO_DIR, clip_minutes=args.clip_minutes,
                                teacher_minutes=args.teacher_minutes, n_val=args.val, n_test=args.test,
                                n_single=args.single, seed=args.seed)
        elif args.demo_command == "extract":
            result = demo.extract_and_evaluate(args.out or demo.DEMO_DIR)
        else:
            result = demo.evaluate(args.demo or demo.DEMO_DIR)
        print(json.dumps(result), flush=True)
        return 0
    if args.command == "bench":
        from . import bench

        if args.benchmark == "refit":
            bench.run("refit", n_images=args.n_images, n_concepts=args.n_concepts, n_classes=args.n_classes,
                      alpha=args.alpha, moves=args.moves, seed=args.seed)
        elif args.benchmark == "app":
            bench.run("app", workspace=args.workspace, moves=args.moves)
        elif args.benchmark == "extract":
            bench.run("extract", model_name=args.model, batch_size=args.batch_size, batches=args.batches,
                      device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
