"""`effnet table`, `effnet info`, help and error handling of the CLI dispatcher."""

import csv
import io
import json
import subprocess
import sys
import time

import pytest

from effnet.cli import main


def test_table_markdown_has_paper_and_exact(capsys):
    assert main(["table"]) == 0
    out = capsys.readouterr().out
    assert "EfficientNet-B7" in out and "ResNet-50" in out and "66.3M" in out and "37.7B" in out
    assert "two_pow_phi" in out


def test_table_json_numbers(capsys):
    assert main(["table", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    b0 = next(r for r in data["official"] if r["model"] == "EfficientNet-B0")
    assert b0["params_effnet"] == 5_288_548 and b0["macs_effnet"] == 385_814_752 and b0["top1"] == 77.1
    r50 = next(r for r in data["official"] if r["model"] == "ResNet-50")
    assert r50["params_ratio_paper"] == 4.9 and r50["params_effnet"] == 25_557_032
    family = data["compound"]
    assert [r["phi"] for r in family] == list(range(8))
    assert family[0]["macs_ratio"] == 1.0 and family[3]["two_pow_phi"] == 8


def test_table_csv_is_parseable(capsys):
    assert main(["table", "--format", "csv", "--section", "compound", "--phi-max", "3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and rows[2]["resolution"] == "296"


def test_info_layout(capsys):
    assert main(["info", "efficientnet_b3"]) == 0
    out = capsys.readouterr().out
    assert "12,233,232" in out and "stage6" in out
    assert main(["info", "efficientnet_b0", "--format", "json", "--resolution", "256"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resolution"] == 256 and [p["repeats"] for p in data["parts"][1:8]] == [1, 2, 2, 3, 3, 4, 1]


def test_info_spec_file(tmp_path, capsys):
    from effnet.architectures import compound_spec

    path = tmp_path / "spec.json"
    path.write_text(compound_spec(2).to_json())
    assert main(["info", str(path)]) == 0
    assert "296px" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["info", "efficientnet_b9"], "unknown model name"),
        (["info", "efficientnet_b0", "--resolution", "4"], "resolution"),
        (["table", "--alpha", "0.5"], "alpha"),
        (["table", "--phi-max", "-1"], "phi-max"),
    ],
)
def test_user_errors_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_does_not_import_torch_and_is_fast():
    code = (
        "import sys, io, contextlib; from effnet.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['table']); main(['info', 'efficientnet_b3'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for argv in (["table"], ["info", "efficientnet_b3"]):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "effnet", *argv], check=True, capture_output=True)
        assert time.perf_counter() - start < 3.0


def test_subprocess_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "effnet", "info", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
