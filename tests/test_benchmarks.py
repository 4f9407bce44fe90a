"""Smoke test of the benchmark scripts: one runs in --quick mode and writes well-formed JSON (no timing asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_multibert_benchmark_quick_writes_its_table(tmp_path):
    out = tmp_path / "multibert.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_multibert.py"), "--quick", "--before",
                           "--router-lengths", "64", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "multibert" and data["quick"] is True
    assert {"cpu_model", "logical_cores", "torch_threads", "loadavg_start", "loadavg_end"} <= set(data["machine"])
    assert data["machine"]["torch_threads"] == 1
    pipelines = {row["pipeline"]: row for row in data["rows"]}
    assert {"floor", "one_adapter", "routed_docs", "routed_groups8", "routed_docs_read64",
            "routed_docs_unsorted", "routed_docs_router_bfloat16", "routed_groups8_router_bfloat16"} <= set(pipelines)
    for row in pipelines.values():
        assert set(data["columns"]) <= set(row)
        assert row["sentences"] == data["settings"]["sentences"] and row["sentences_per_s"] > 0
    assert pipelines["floor"]["vs_floor"] == 1.0
    assert {"classifier_ms_per_document_real", "adapter_switch_ms"} <= set(data["costs"])
    assert set(data["targets"]) == {"routed_docs_ge_70pct_floor", "routed_groups8_ge_70pct_floor",
                                    "router_read_lengths_reaching_70pct", "router_dtypes_reaching_70pct"}
    assert "classifier_bfloat16_ms_per_document_real" in data["costs"]
    assert "| pipeline |" in done.stdout  # the printed table


@pytest.mark.timeout(300)
def test_predict_benchmark_quick_measures_each_kind(tmp_path):
    out = tmp_path / "predict.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_predict.py"), "--quick", "--kinds",
                           "multibert_domain", "multibert_routed", "--multibert", str(tmp_path / "none"),
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "predict" and data["quick"] is True
    rows = {row["kind"].split(" ")[0]: row for row in data["rows"]}
    assert set(rows) == {"multibert_domain", "multibert_routed"}
    for row in rows.values():
        assert row["documents"] == 16 and row["sentences"] >= 16 and row["documents_per_s"] > 0
        assert row["sentences_per_s"] >= row["documents_per_s"]
    assert "| kind |" in done.stdout


@pytest.mark.timeout(300)
def test_training_benchmark_times_bfloat16_beside_float32(tmp_path):
    """The bf16 variant runs in the timing loop and, first in the list, in a fresh process with ``bf16=True`` (a
    CPU-only machine needs no ``use_cpu`` for it)."""
    out = tmp_path / "train.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_cllmfs_train.py"), "--quick", "--variants",
                           "lora_cl_noise_bf16", "lora_cl_noise", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {row["variant"]: row for row in data["rows"]}
    assert set(rows) == {"lora_cl_noise_bf16", "lora_cl_noise"} and rows["lora_cl_noise_bf16"]["step_s"] > 0
    assert data["memory"]["lora_cl_noise_bf16"]["steps"] == 1
    assert "| lora_cl_noise_bf16 |" in done.stdout


@pytest.mark.timeout(300)
def test_router_probe_finds_the_domain_signal_of_a_frozen_core(tmp_path, data_dir):
    """Email and reviews (UNER) are far apart for the packaged MiniLM: both probes score well above chance."""
    config = tmp_path / "two.yaml"
    config.write_text(f"core_model: sentence-transformers/all-MiniLM-L6-v2\ndata_dir: {data_dir}\n"
                      "domains: [uner_en_ewt:email, uner_en_ewt:reviews]\nmax_train_sentences: 120\n"
                      "max_test_sentences: 120\ngroup_size: 4\nrouter_max_length: 128\n", encoding="utf-8")
    out = tmp_path / "probe.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "router_probe.py"), "--config", str(config),
                           "--cores", "sentence-transformers/all-MiniLM-L6-v2", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["settings"]["domains"] == ["email", "reviews"] and data["settings"]["group_size"] == 4
    rows = {row["probe"]: row for row in data["rows"]}
    assert set(rows) == {"nearest_centroid", "logistic_regression"}
    for row in rows.values():
        assert row["test_groups"] >= 20 and row["accuracy"] >= 0.7, row
    assert "| sentence-transformers/all-MiniLM-L6-v2 | logistic_regression |" in done.stdout
