#!/usr/bin/env bash
# Issue 16's GPU figures in one run, on a machine with a CUDA GPU (see README "Performance"):
#
#     bash conceptkd_tools/gpu_bench.sh [OUT_FOLDER]
#
# `bench extract` for ViT-B/16 at batch 64 with each segmenter at the default superpixel size, then
# the same at the model's own size (before SUPERPIXEL_SIZE), then the device time of each stage.
# One JSON line per run goes to OUT_FOLDER/gpu_bench.jsonl (default: here), the logs beside it;
# last, a profiled torch-slic run: profiled_run.json and bench_extract_profile.txt.
# DEVICE (cuda), MODEL (ViT-B-16), BATCH_SIZE (64) and BATCHES (16, timed batches per round) can be
# set (the test runs it on CPU, small). Wheels in ./.whl (e.g. open_clip_torch for a machine without
# the package index) are installed into a private folder first.
set -uo pipefail
out="${1:-.}"
device="${DEVICE:-cuda}"
model="${MODEL:-ViT-B-16}"
batch_size="${BATCH_SIZE:-64}"
batches="${BATCHES:-16}"
python="${PYTHON:-python}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install --quiet --no-deps --target /tmp/conceptkd-site .whl/*.whl
    export PYTHONPATH="/tmp/conceptkd-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >>"$out/gpu_bench.log" 2>&1

run() {
    echo "== $*" | tee -a "$out/gpu_bench.log" >&2
    if ! "$python" "$@" >>"$out/gpu_bench.jsonl" 2>>"$out/gpu_bench.log"; then
        echo "{\"failed\": \"$*\"}" >>"$out/gpu_bench.jsonl"
    fi
}

bench=(-m conceptkd_core bench extract --device "$device" --model "$model" --batch-size "$batch_size" --batches "$batches")
for size in 112 224; do
    for segmenter in torch-slic slic; do
        run "${bench[@]}" --segmenter "$segmenter" --superpixel-size "$size"
    done
done
run -m conceptkd_tools.extract_stages --device "$device" --models "$model" --batch-size "$batch_size"

# Where this process's time goes in the default-size torch-slic pipeline (the host work around the
# device's: batching, copies, waits), for the next lever: its own JSON line, then the profile.
echo "== profile" | tee -a "$out/gpu_bench.log" >&2
if "$python" -m cProfile -o "$out/bench_extract.prof" "${bench[@]}" --segmenter torch-slic \
    >"$out/profiled_run.json" 2>>"$out/gpu_bench.log"; then
    "$python" -c 'import pstats, sys
stats = pstats.Stats(sys.argv[1], stream=sys.stdout)
stats.sort_stats("tottime").print_stats(40)
stats.sort_stats("cumulative").print_stats(30)' "$out/bench_extract.prof" >"$out/bench_extract_profile.txt" 2>>"$out/gpu_bench.log"
fi
