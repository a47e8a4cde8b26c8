"""One rule for outputs that exist: no command replaces a result unless told (`--overwrite`), and continuing the same
work (a study re-run into its own folder) is not replacing. The benchmark scripts leave the committed results alone."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

from effnet.cli import main
from effnet.config.search import SearchConfig
from effnet.search.run import run_search
from test_search_runs import SMALL, _fitted_trainer

REPO = Path(__file__).resolve().parents[1]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(capsys, argv: list[str], *needles: str) -> None:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_scale_spec_is_not_replaced_unasked(tmp_path, capsys):
    spec = tmp_path / "chosen.json"
    argv = ["scale", "--phi-max", "2", "--output-spec", str(spec)]
    assert main(argv) == 0 and spec.is_file()
    spec.write_text('{"kept": true}')  # an earlier result, e.g. of another budget
    _refused(capsys, argv, f"--output-spec {spec}: {spec} exists (an earlier result); pass --overwrite")
    assert spec.read_text() == '{"kept": true}'
    assert main([*argv, "--overwrite"]) == 0 and "kept" not in spec.read_text()


def test_export_without_output_does_not_replace_the_last_export(tmp_path, capsys, monkeypatch):
    import torch

    from effnet.models.factory import create_model, save_pretrained

    torch.manual_seed(0)
    weights = save_pretrained(create_model("efficientnet_lite0", num_classes=5).eval(), tmp_path / "w.safetensors")
    monkeypatch.chdir(tmp_path)
    argv = ["export", "--weights", str(weights), "--format", "torchscript", "--input-size", "32"]
    assert main(argv) == 0
    exported = tmp_path / "runs" / "export" / "efficientnet_lite0.torchscript.pt"
    before = _digest(exported)
    capsys.readouterr()
    _refused(capsys, argv, f"{exported.relative_to(tmp_path)} exists", "pass --overwrite")
    assert _digest(exported) == before
    assert main([*argv, "--overwrite"]) == 0


def test_a_study_rewrites_only_its_own_report(tmp_path, capsys):
    """Re-running a study into its folder rewrites its report; another study's report there is refused."""
    config = SearchConfig(**SMALL, epochs=1, output=str(tmp_path))
    run_search(config, trainer=_fitted_trainer, progress=False)
    summary = tmp_path / "search_summary.json"
    before = _digest(summary)
    argv = ["search", "--output", str(tmp_path), "--study", "other", "--step", "0.5", "--tol", "0.6", "--quiet"]
    _refused(capsys, argv, f"{tmp_path} holds the report of study 'effnet-search'", "not of 'other'", "--overwrite")
    assert _digest(summary) == before


@pytest.mark.parametrize(
    "script", ["inference_cpu", "train_cpu", "saved_activations", "search_fidelity", "latency_model", "scale_plan"]
)
def test_benchmarks_write_outside_the_committed_results(script, monkeypatch):
    """Every benchmark's default --out-dir is runs/benchmarks; benchmarks/results changes only when named."""
    source = (REPO / "benchmarks" / f"{script}.py").read_text()
    assert "default=DEFAULT_OUT" in source and '"results")' not in source and 'benchmarks/results"))' not in source
    common = importlib.util.spec_from_file_location("bench_common", REPO / "benchmarks" / "common.py")
    assert common is not None and common.loader is not None
    module = importlib.util.module_from_spec(common)
    monkeypatch.setitem(sys.modules, "bench_common", module)  # dataclasses look their module up there
    common.loader.exec_module(module)
    assert module.DEFAULT_OUT == REPO / "runs" / "benchmarks"
    assert module.COMMITTED_OUT == REPO / "benchmarks" / "results"
    assert 'OUT="${OUT:-runs/benchmarks/gpu}"' in (REPO / "benchmarks" / "gpu.sh").read_text()
