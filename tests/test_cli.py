import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_refit_prints_one_json_line_with_the_goal_figures():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "conceptkd_core",
            "bench",
            "refit",
            "--n-images",
            "600",
            "--n-concepts",
            "60",
            "--n-classes",
            "4",
            "--moves",
            "10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in ("refit_ms_p50", "cold_fit_ms", "sklearn_lasso_ms", "speedup_vs_sklearn", "objective_rel_gap"):
        assert isinstance(result[key], (int, float))
    assert result["cold_converged"] is True
    assert result["objective_rel_gap"] <= 1e-4  # at least as good as scikit-learn's optimum
    assert result["max_kkt_violation_after_moves"] <= 1e-6


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    app_cmd = lines[lines.index("# run the app on its embedded default") + 1]
    test_cmd = lines[lines.index("# run the tests") + 1]
    assert "streamlit run app.py" in app_cmd and "pip install -r requirements.txt" in app_cmd
    assert "pytest" in test_cmd and "pip install -r requirements-dev.txt" in test_cmd
    assert "ruff check" in test_cmd and "ruff format --check" in test_cmd
    # The two commands come first: before any other section of the README.
    assert readme.index("# run the tests") < readme.index("\n## ")


def test_bench_extract_reports_both_throughputs():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "conceptkd_core",
            "bench",
            "extract",
            "--model",
            "ViT-B-32",
            "--batch-size",
            "2",
            "--batches",
            "1",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dense_images_per_s"] > 0 and result["encode_image_images_per_s"] > 0
    assert result["worker_start_s"] > 0 and result["workers"] == 1
    assert result["ratio"] == pytest.approx(
        result["dense_images_per_s"] / result["encode_image_images_per_s"], rel=0.01
    )
    assert result["end_to_end_images_per_s"] > 0 and result["end_to_end_images"] == 4
    assert result["workers"] == 1
    # The worker cuts the superpixels and lives through every round: its CPU is counted (it was not).
    assert result["dense_workers_cpu_s_per_image"] > 0 and result["dense_main_cpu_s_per_image"] > 0
    parts = result["dense_main_cpu_s_per_image"] + result["dense_workers_cpu_s_per_image"]
    assert result["dense_cpu_s_per_image"] == pytest.approx(parts, abs=2e-3)


def test_the_cpu_of_a_child_is_counted_while_it_lives():
    import multiprocessing

    from conceptkd_tools.bench_extract import children_cpu_s

    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=_burn_then_wait, args=(0.5, ready, stop))
    before = children_cpu_s()
    child.start()
    try:
        assert ready.wait(60)
        assert children_cpu_s() - before >= 0.3  # alive, not reaped: read from /proc
    finally:
        stop.set()
        child.join(60)


def _burn_then_wait(seconds, ready, stop):
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    ready.set()
    stop.wait(60)
