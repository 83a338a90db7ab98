"""The benchmarks keep working: ``python -m bench --smoke``, ``bench quality --smoke``,
``bench compose --smoke``, ``bench listeners --smoke``, ``bench.ceiling --smoke`` and
``python -m bench.gpu --device cpu --smoke`` run every figure at tiny
sizes and write their results outside the repository, each CPU kind's rows into RESULTS.md's
question tables and the whole run into runs/<kind>.md (bench/results.py). Of the decided trials
in docs/trials/ only base-size is run, since scripts/make_pocket.sh still calls it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Figure, Stats, cpu_kind, interleaved
from bench.results import cells, put_rows, run_file, write_run

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS``, or ``python SCRIPT.py ARGS``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    head = [args[0]] if args[0].endswith(".py") else ["-m", args[0]]
    return subprocess.run([sys.executable, *head, *args[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _committed() -> dict:
    return {p: p.stat().st_mtime for p in [ROOT / "bench" / "RESULTS.md", *(ROOT / "bench" / "runs").glob("*.md")]
            if p.exists()}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-work")


@pytest.mark.slow
def test_bench_smoke_writes_every_figure(work, tmp_path):
    before = _committed()
    out = tmp_path / "RESULTS.md"
    out.write_text("# results\n\nkept text\n\n<!-- table:gen:begin -->\n| CPU | date | x |\n|---|---|---|\n"
                   "| Other CPU | 2026-01-01 | 1 vs 1 tok/s |\n<!-- table:gen:end -->\n")
    res = _run(["bench", "--smoke", "--work", str(work), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text, kind = out.read_text(), cpu_kind()
    assert "kept text" in text and "| Other CPU | 2026-01-01 |" in text  # another CPU's row stays
    for key in ("train", "share", "gen", "ab", "mem", "render", "startup"):  # one table per question
        block = text.split(f"<!-- table:{key}:begin -->")[1].split(f"<!-- table:{key}:end -->")[0]
        assert f"\n| {kind} | " in block, key
    gen = text.split("<!-- table:gen:begin -->")[1].split("<!-- table:gen:end -->")[0]
    assert "tok/s:" in gen and ("**met**" in gen or "**missed**" in gen)  # studio vs reference, ratio, verdict
    assert "× faster" in text  # A/B ratio written as a speed-up
    details = run_file(out, kind).read_text()
    for heading in ("<!-- bench:begin -->", "### Machine", "### Summary", "### GPU", "Training data seen per epoch",
                    "Training, useful tokens/s", "Generation, tokens/s", "A/B, seconds", "Memory, compare setup",
                    "Rendering a", "Start-up"):
        assert heading in details, heading
    assert _committed() == before, "the smoke run must not touch bench/RESULTS.md or bench/runs/"


def test_a_run_replaces_its_cpu_kinds_rows_and_keeps_the_others(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# results\n\n## Speed\n\nprose above\n\n<!-- table:speed:begin -->\n| CPU | shape | tok/s |\n"
                   "|---|---|---|\n| AVX2 EPYC | pocket | 1 |\n| AMX Xeon | pocket | 2 |\n<!-- table:speed:end -->\n"
                   "\nprose below\n")
    put_rows(out, "speed", "Speed", ["CPU", "shape", "tok/s"], [["AVX2 EPYC", "pocket", 3], ["AVX2 EPYC", "hub", 4]],
             keys=2)
    lines = out.read_text().splitlines()
    assert lines[lines.index("<!-- table:speed:begin -->") + 3:lines.index("<!-- table:speed:end -->")] == [
        "| AVX2 EPYC | pocket | 3 |", "| AMX Xeon | pocket | 2 |", "| AVX2 EPYC | hub | 4 |"]
    assert "prose above" in lines and "prose below" in lines
    put_rows(out, "memory", "Memory", ["CPU", "MiB"], [["AMX Xeon", 80]])  # a new question: appended
    assert out.read_text().endswith("## Memory\n\n<!-- table:memory:begin -->\n| CPU | MiB |\n|---|---|\n"
                                    "| AMX Xeon | 80 |\n<!-- table:memory:end -->\n")
    path = write_run(out, "AVX-512 BF16 EPYC", "bench", ["## run 1"])
    write_run(out, "AVX-512 BF16 EPYC", "quality", ["## quality"])
    write_run(out, "AVX-512 BF16 EPYC", "bench", ["## run 2"])
    assert path == tmp_path / "runs" / "avx-512-bf16-epyc.md"
    text = path.read_text()
    assert "## run 2" in text and "## run 1" not in text and "## quality" in text
    assert cpu_kind({"amx": False, "avx512_bf16": False, "torch_kernels": "AVX2"}, "AMD EPYC 7B13") == "AVX2 EPYC"
    assert cpu_kind({"amx": True, "avx512_bf16": True, "torch_kernels": "AVX512"}, "Intel(R) Xeon(R)") == "AMX Xeon"


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


def test_quality_groove_targets_judge_against_the_artists_own_spread():
    from bench.quality import groove_checks, verdict

    r = {"loss_ratio": 0.7, "adapter_texture_gap": 0.2, "base_texture_gap": 0.5, "adapter_copy_rate": 0.0,
         "train_minutes": 2.0, "base_groove_distance": 0.30, "adapter_groove_distance": 0.19,
         "groove_yardstick": {"distance": 0.14, "empty_beats": 0.01, "consistency": 0.02, "off_grid": 0.05},
         "reference_groove": {"empty_beats": 0.0, "consistency": 0.90, "off_grid": 0.02},
         "adapter_groove": {"empty_beats": 0.04, "consistency": 0.86, "off_grid": 0.10}}
    assert groove_checks(r) == {"groove": True, "empty beats": True, "consistency": True, "off-grid": True}
    assert verdict(r) == "met"
    far = {**r, "adapter_groove_distance": 0.20, "adapter_groove": {"empty_beats": 0.25, "consistency": 0.80,
                                                                    "off_grid": 0.27}}
    assert verdict(far) == "missed: groove, empty beats, consistency, off-grid"  # 0.20 > 0.14 + 0.05
    assert groove_checks({**r, "adapter_groove_distance": 0.31})["groove"] is False  # above the base's
    assert groove_checks({**r, "adapter_groove": {}})["empty beats"] is False  # no samples: not met
    old = {k: v for k, v in r.items() if "groove" not in k}
    assert verdict(old) == "met"  # a result from before groove was measured is judged as it was


def test_a_recipe_tried_with_overrides_keeps_its_own_rows_beside_the_defaults(tmp_path):
    from bench.quality import HEADER, HEADING, recipe_name, rows, section_name
    from bench.results import put_rows

    r = {"artist": "haydn", "pieces": 9, "base_loss": 1.4, "adapter_loss": 1.3, "loss_ratio": 0.93,
         "base_texture_gap": 0.4, "adapter_texture_gap": 0.2, "adapter_copy_rate": 0.0, "train_minutes": 4.0,
         "minutes_to_within_2pct": 1.0, "best_epoch": 6}
    out = tmp_path / "RESULTS.md"
    put_rows(out, "quality", HEADING, HEADER, rows([r], recipe_name(None), "AMX Xeon", "d"), keys=3)
    fp32 = recipe_name(None, {"precision": "fp32"})
    put_rows(out, "quality", HEADING, HEADER, rows([{**r, "adapter_loss": 1.31}], fp32, "AMX Xeon", "d"), keys=3)
    text = out.read_text()
    assert "| AMX Xeon | default | haydn |" in text and "| AMX Xeon | default, precision=fp32 | haydn |" in text
    assert "| 1.300 |" in text and "| 1.310 |" in text  # neither replaced the other
    assert section_name(None) == "quality" and section_name("artist", {"epochs": 4}) == "quality-artist-epochs=4"


@pytest.mark.slow
def test_quality_bench_smoke_trains_evaluates_and_writes_its_table(tmp_path):
    out, kind = tmp_path / "RESULTS.md", cpu_kind()
    out.write_text("# results\n\nkept text\n")
    res = _run(["bench", "quality", "--smoke", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text, details = out.read_text(), run_file(out, kind).read_text()
    assert "kept text" in text and "<!-- table:quality:begin -->" in text and f"| {kind} | default | smoke |" in text
    assert "texture gap base → adapter" in text and "<!-- quality:begin -->" in details
    assert "groove distance base → adapter" in details and "| smoke | " in details.split("groove distance base")[1]
    # the app's artist-only preset: its own rows and section, trained on the album as it is, rank 8
    res = _run(["bench", "quality", "--smoke", "--preset", "artist", "--each-epoch", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text, details = out.read_text(), run_file(out, kind).read_text()
    assert f"| {kind} | default | smoke |" in text and f"| {kind} | preset artist | smoke |" in text
    assert "<!-- quality:begin -->" in details and "<!-- quality-artist:begin -->" in details
    assert 'preset "Artist style only"' in details
    assert "the album not augmented" in details and "'lora_r': 8" in res.stdout
    assert "Each kept epoch of smoke" in details and "\n- 1: " in details  # the one epoch, evaluated


@pytest.mark.app
def test_listeners_bench_smoke_serves_clients_at_once_in_both_modes(tmp_path):
    out, kind = tmp_path / "RESULTS.md", cpu_kind()
    out.write_text("# results\n\nkept text\n")
    res = _run(["bench", "listeners", "--smoke", "--results", str(out)], timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    text, details = out.read_text(), run_file(out, kind).read_text()
    block = text.split("<!-- table:listeners:begin -->")[1].split("<!-- table:listeners:end -->")[0]
    assert "kept text" in text and f"| {kind} | off |" in block and f"| {kind} | batched |" in block
    assert "<!-- listeners:begin -->" in details and "pairs/min" in details
    batched = cells(next(line for line in block.splitlines() if f"| {kind} | batched |" in line))
    # no errors, every seed the same MIDI with and without the batcher, and calls really shared decodes
    assert batched[9] == "0" and batched[12] == "8/8" and int(batched[11]) >= 2


@pytest.mark.slow
def test_compose_bench_smoke_makes_a_long_piece_and_writes_its_part(tmp_path):
    out, kind = tmp_path / "RESULTS.md", cpu_kind()
    out.write_text("# results\n\nkept text\n")
    res = _run(["bench", "compose", "--smoke", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text, details = out.read_text(), run_file(out, kind).read_text()
    assert "kept text" in text and "<!-- table:compose-long:begin -->" in text and f"| {kind} | " in text
    assert "tok/s long vs one window" in text and ("**met**" in text or "**missed" in text)
    assert "<!-- compose:begin -->" in details and "### long" in details and "| 0 | " in details


@pytest.mark.slow
def test_infill_bench_smoke_writes_its_table(tmp_path):
    before = _committed()
    out, kind = tmp_path / "RESULTS.md", cpu_kind()
    out.write_text("# results\n\nkept text\n")
    res = _run(["bench", "infill", "--smoke", "--results", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    text, details = out.read_text(), run_file(out, kind).read_text()
    assert "kept text" in text and "<!-- table:infill:begin -->" in text and f"\n| {kind} | " in text
    assert "<!-- infill:begin -->" in details and "the original bar" in details and "- smoke: bar " in details
    assert _committed() == before  # the committed results are left alone


@pytest.mark.slow
def test_base_size_bench_smoke_measures_a_loss_curve_and_the_limits(tmp_path):
    out = tmp_path / "base_size.json"
    res = _run(["docs/trials/base-size/run.py", "--smoke", "--minutes", "0.05", "--every", "1", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    shapes = json.loads(out.read_text())["shapes"]
    assert len(shapes) == 2
    for s in shapes:
        assert s["curve"] and all(c["val_loss"] > 0 for c in s["curve"])
        assert s["lora_train_tok_s"] > 0 and s["gen_tok_s"] > 0 and 0 < s["folder_mib"] < 5


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
    assert "| tiny (2 × 64) |" in res.stdout and "How far the studio's training could lead" in res.stdout
