"""The benchmarks keep working: ``python -m bench --smoke`` and ``python -m bench.gpu --device cpu
--smoke`` run every figure at tiny sizes and write their results outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Figure, Stats, interleaved

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-work")


@pytest.mark.slow
def test_bench_smoke_writes_every_figure(work, tmp_path):
    committed = ROOT / "bench" / "RESULTS.md"
    before = committed.stat().st_mtime if committed.exists() else None
    out = tmp_path / "RESULTS.md"
    res = _run(["bench", "--smoke", "--work", str(work), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    for heading in ("## Machine", "## Summary", "## GPU", "## Scale-out", "Training data seen per epoch",
                    "Training, useful tokens/s", "Generation, tokens/s", "A/B, seconds", "Memory, compare setup",
                    "Rendering a", "Start-up"):
        assert heading in text, heading
    rows = [line for line in text.splitlines() if line.startswith("| ") and "tok/s" in line and "|---" not in line]
    assert rows, "no throughput rows in the summary"
    assert "**met**" in text or "**missed**" in text  # every measured figure gets a verdict
    assert "reference" in text and "× faster" in text  # A/B ratio written as a speed-up
    after = committed.stat().st_mtime if committed.exists() else None
    assert after == before, "the smoke run must not overwrite bench/RESULTS.md"


@pytest.mark.slow
def test_gpu_script_code_path_on_cpu(work, tmp_path):
    out = tmp_path / "gpu.json"
    res = _run(["bench.gpu", "--device", "cpu", "--smoke", "--work", str(work), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    raw = result["raw"]
    assert result["device"] == "cpu" and result["smoke"] is True
    rates = [v["tokens_per_s"] for v in raw["training"].values() if isinstance(v, dict)]
    assert len(rates) == 2 and all(r > 0 for r in rates)  # the reference loop and one studio batch size
    assert raw["training"]["flops_per_token"] > 0
    (recipe,) = raw["full_recipe"].values()
    assert recipe["epochs"] == 1 and recipe["tokens"] > 0
    assert all(v["tokens_per_s"] > 0 for v in raw["generation"].values())


def test_flops_per_token_counts_a_lora_step():
    from types import SimpleNamespace

    from bench.gpu import flops_per_token, peak_tflops

    cfg = SimpleNamespace(n_embd=512, n_layer=6, vocab_size=292)
    base = 6 * 12 * 512 * 512 + 292 * 512
    assert flops_per_token(cfg, 0, 1024) == 4 * base + 12 * 6 * 1024 * 512
    assert flops_per_token(cfg, 1000, 1024) - flops_per_token(cfg, 0, 1024) == 6000
    assert peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert peak_tflops("Some New Card", None) is None and peak_tflops("x", 100.0) == 100.0


def test_verdicts_use_paired_ratios_and_absolute_limits():
    fast = Figure("gen-x", "g", "tok/s", True, target=2.0)
    for ref, studio in ((10, 25), (5, 9), (10, 30)):
        fast.add("reference", ref)
        fast.add("studio", studio)
    assert fast.ratios().values == [2.5, 1.8, 3.0]
    assert fast.met() is True  # median of the paired ratios, 2.5
    slow = Figure("ab-x", "a", "s", False, target=1.8)
    slow.add("reference", 10)
    slow.add("studio", 6)
    assert slow.ratios().median == pytest.approx(10 / 6) and slow.met() is False
    boot = Figure("startup", "s", "s", False, absolute_limit=15.0)
    boot.add("studio", 12)
    boot.add("studio", 20)
    assert boot.met() is False  # median 16 s
    assert Figure("startup", "s", "s", False, status="pending").met() is None
    mem = Figure("mem-x", "m", "MiB", False, target=0.6, fraction=True)
    mem.add("reference", 100)
    mem.add("studio", 55)
    assert mem.ratios().values == [0.55] and mem.met() is True
    assert Stats([3.0, 1.0, 2.0]).fmt(1, " s") == "2.0 s (1.0–3.0)"
    assert interleaved(3, ["a", "b"]) == [["a", "b"], ["b", "a"], ["a", "b"]]


@pytest.mark.slow
def test_quality_bench_smoke_trains_evaluates_and_writes_its_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# results\n\nkept text\n")
    res = _run(["bench", "quality", "--smoke", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert "kept text" in text and "<!-- quality:begin -->" in text and "| smoke | 4 |" in text
    assert "texture gap base → adapter" in text
    # the app's artist-only preset: its own section, trained on the album as it is, rank 8
    res = _run(["bench", "quality", "--smoke", "--preset", "artist", "--each-epoch", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert "<!-- quality:begin -->" in text and "<!-- quality-artist:begin -->" in text
    assert 'preset "Artist style only"' in text
    assert "the album not augmented" in text and "'lora_r': 8" in res.stdout
    assert "Each kept epoch of smoke" in text and "\n- 1: " in text  # the one epoch, evaluated


@pytest.mark.slow
def test_base_size_bench_smoke_measures_a_loss_curve_and_the_limits(tmp_path):
    out = tmp_path / "base_size.json"
    res = _run(["bench.base_size", "--smoke", "--minutes", "0.05", "--every", "1", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    shapes = json.loads(out.read_text())["shapes"]
    assert len(shapes) == 2
    for s in shapes:
        assert s["curve"] and all(c["val_loss"] > 0 for c in s["curve"])
        assert s["lora_train_tok_s"] > 0 and s["gen_tok_s"] > 0 and 0 < s["folder_mib"] < 5


@pytest.mark.slow
def test_precision_bench_smoke_compares_fp32_and_bf16_training(tmp_path):
    out = tmp_path / "precision.json"
    res = _run(["bench.precision", "--smoke", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    assert [row["precision"] for row in r["rows"]] == ["fp32", "bf16"]
    assert all(row["val_loss"] and row["tokens_per_s"] > 0 for row in r["rows"]) and r["tolerance"] == 0.01


@pytest.mark.slow
def test_variations_bench_smoke_times_one_and_four_rows(tmp_path):
    out = tmp_path / "RESULTS.md"
    res = _run(["bench.variations", "--smoke", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "four variations in one batch" in out.read_text()


@pytest.mark.slow
def test_decoding_bench_smoke_measures_bandwidth_and_every_format(tmp_path):
    out = tmp_path / "decoding.json"
    res = _run(["bench.decoding", "--smoke", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["bandwidth_gb_s"] > 0.5 and set(r["cpu"]) >= {"avx512_bf16", "avx512_vnni", "amx", "auto_decoding"}
    formats = r["shapes"][0]["formats"]
    assert set(formats) == {"fp32", "bf16", "int8"}
    ceiling = formats["int8"]["ceiling_tok_s"] / formats["fp32"]["ceiling_tok_s"]
    assert abs(ceiling - 4) < 0.05  # int8 reads a quarter of the bytes
    assert all(0 < f["share_of_ceiling"] and f["tok_s"] > 0 for f in formats.values())
    losses = r["quality"]["loss"]
    assert abs(losses["int8"] - losses["fp32"]) / losses["fp32"] < 0.01


@pytest.mark.slow
def test_ceiling_bench_smoke_pairs_the_ceiling_with_both_training_loops(work, tmp_path):
    out = tmp_path / "ceiling.json"
    res = _run(["bench.ceiling", "--smoke", "--work", str(work), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["precision"] in {"fp32", "bf16"} and set(r["cpu"]) >= {"avx512_bf16", "amx", "torch_kernels"}
    (shape,) = r["shapes"]
    rates = shape["tok_s"]
    assert set(rates) == {"ceiling", "reference", "studio"} and all(v and v[0] > 0 for v in rates.values())
    (parts,) = shape["parts_s"]
    assert parts["products"] > 0 and parts["attention"] > 0
    assert rates["ceiling"][0] == pytest.approx(shape["seq"] / (parts["products"] + parts["attention"]))
    assert shape["ratios"]["ceiling/reference"][0] == pytest.approx(rates["ceiling"][0] / rates["reference"][0])
    # the studio's real loop does everything the ceiling times and more, so it cannot beat it
    assert rates["studio"][0] < rates["ceiling"][0]
    assert "<!-- ceiling-" in res.stdout and "| tiny (2 × 64) |" in res.stdout
