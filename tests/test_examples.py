"""The gallery examples and the demo run, as a user would run them.

Each ``examples/plot_*.py`` runs in its own process at smoke-test size
(``SKLIP_EXAMPLES_SMALL=1``: little data, few epochs) with matplotlib's Agg
backend; ``python -m sklip`` runs end to end with a few epochs.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
GALLERY = {
    "plot_pipeline_gridsearch.py",
    "plot_certified_accuracy.py",
    "plot_wasserstein_two_samples.py",
    "plot_counterfactual_digits.py",
    "plot_cnn_digits.py",
    "plot_gpu.py",
    "plot_streaming_wasserstein.py",
    "plot_outlier_detection.py",
    "plot_regression_interval.py",
    "plot_deploy_onnx.py",
}


def _run(arguments, cwd, timeout=300):
    """``python ARGUMENTS`` in ``cwd`` with the smoke-test size and no display."""
    env = {**os.environ, "MPLBACKEND": "Agg", "SKLIP_EXAMPLES_SMALL": "1"}
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_gallery_holds_the_documented_examples():
    assert {path.name for path in EXAMPLES} == GALLERY


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_has_a_gallery_title_and_a_small_mode(path):
    text = path.read_text()
    # sphinx-gallery needs a docstring that opens with an underlined title.
    match = re.match(r'r?"""\n(.+)\n(=+)\n', text)
    assert match, f"{path.name} must open with a docstring whose first line is a title"
    assert len(match.group(2)) >= len(match.group(1))
    assert "SKLIP_EXAMPLES_SMALL" in text, f"{path.name} must shrink itself for the tests"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs_at_smoke_test_size(path, tmp_path):
    pytest.importorskip("matplotlib")
    result = _run([str(path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_demo_help_lists_its_options(tmp_path):
    result = _run(["-m", "sklip", "--help"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--dataset", "--epochs", "--device", "--output", "--no-plot"):
        assert option in result.stdout
    for dataset in ("digits", "breast_cancer", "moons"):
        assert dataset in result.stdout


def test_demo_proves_its_certificates_reports_w1_and_saves_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "demo.png"
    result = _run(["-m", "sklip", "--epochs", "5", "--output", str(figure)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "certified accuracy" in out
    # The attack just inside the certificates never succeeds, however short the training.
    assert "0 flipped (proof)" in out
    assert re.search(r"Wasserstein-1 distance between classes 0 and 8 .*: \d+\.\d+", out)
    assert f"figure saved to {figure}" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("dataset", ["breast_cancer", "moons"])
def test_demo_runs_on_the_other_bundled_datasets(dataset, tmp_path, capsys, monkeypatch):
    from sklip.__main__ import main

    monkeypatch.chdir(tmp_path)
    main(["--dataset", dataset, "--epochs", "3", "--no-plot", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "0 flipped (proof)" in out
    assert "Wasserstein-1 distance" in out
    assert not list(tmp_path.iterdir())  # --no-plot writes nothing


def test_demo_refuses_unknown_datasets_and_non_positive_epochs():
    from sklip.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--dataset", "mnist"])
    with pytest.raises(SystemExit):
        parse_args(["--epochs", "0"])
    args = parse_args(["--dataset", "moons", "--epochs", "7", "--device", "cpu"])
    assert (args.dataset, args.epochs, args.device, args.no_plot) == ("moons", 7, "cpu", False)


def test_demo_refuses_a_device_the_machine_does_not_have():
    import torch

    from sklip.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match="CUDA is not available"):
        main(["--device", "cuda"])
