"""The benchmarks' CSVs in timm's schema (the columns of timm's ``results/benchmark-*.csv``), checked at a tiny size."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import effnet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

# the benchmarks folder is not a package: its helpers are imported from the path above
from common import TIMM_COLUMNS, timm_row, write_timm_csv


def test_timm_schema_csv(tmp_path):
    infer = [timm_row("infer", "efficientnet_b0", 224, 8, 0.05, "effnet onnxruntime")]
    train = [timm_row("train", "efficientnet_lite0", 160, 4, 0.5, "effnet eager")]
    for kind, rows in (("infer", infer), ("train", train)):
        path = write_timm_csv(tmp_path / f"benchmark-{kind}-cpu.csv", kind, rows)
        with open(path, newline="") as handle:
            read = list(csv.DictReader(handle))
        assert list(read[0]) == [*TIMM_COLUMNS[kind], "engine"]
    row = infer[0]
    c = effnet.cost("efficientnet_b0", 224)
    assert (row["infer_samples_per_sec"], row["infer_step_time"], row["infer_batch_size"]) == (160.0, 50.0, 8)
    assert (
        (row["param_count"], row["infer_gmacs"]) == (round(c.params / 1e6, 2), round(c.macs / 1e9, 2)) == (5.29, 0.39)
    )
    assert row["infer_macts"] == round(c.activations / 1e6, 2)
    # timm's published header (results/benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv), column for column
    timm_header = "model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size,param_count,"
    timm_header += "infer_gmacs,infer_macts"
    assert ",".join(TIMM_COLUMNS["infer"]) == timm_header
    assert ",".join(TIMM_COLUMNS["train"]) == (
        "model,train_samples_per_sec,train_step_time,train_batch_size,train_img_size,param_count"
    )
