"""benchmarks/adapter_lr_probe.py: one row per adapter kind and rate, each from a fresh adapter and head."""

import math
from pathlib import Path

import pytest
from hub_tiny import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe():
    return load_script(REPO / "benchmarks" / "adapter_lr_probe.py", "adapter_lr_probe")


def test_every_kind_gets_a_row_of_finite_losses(probe, core, capsys):
    args = ["--core", str(core), "--domain", "wnut17", "--sentences", "8", "--batch_size", "4", "--steps", "20",
            "--runs", "lora:5e-3", "prefix:5e-3", "flat:2e-2"]
    assert probe.main(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "rate" not in line]
    assert [row.split(" | ")[0:2] for row in rows] == [["| lora", "0.005"], ["| prefix", "0.005"], ["| flat", "0.02"]]
    for row in rows:
        losses = [float(x) for x in row.strip("| ").split(" | ")[2:4]]
        assert all(math.isfinite(x) and x > 0 for x in losses)


def test_a_malformed_run_is_refused(probe):
    with pytest.raises(SystemExit):
        probe.main(["--runs", "dora:1e-3"])
