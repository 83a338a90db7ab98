"""One function per figure: both sides, interleaved repeats, the verdict's inputs.

Both sides always run with the same number of intra-op threads: ``Sizes.decode_threads`` for
decoding (generation, A/B, the memory probe) and ``Sizes.train_threads`` for training; by
default torch's own (one per core), what a user's run gets. Run it on an otherwise idle
machine: when other work loads the cores, two threads make every small op wait for the other
thread's core (an elementwise op on a (174, 256) tensor took ~6 ms instead of ~20 µs), which
punishes the side with many small ops (the reference) and measures the load, not the
pipelines. ``--train-threads 1 --decode-threads 1`` is the setting for a shared machine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from bench import reference, studio_side
from bench.common import Figure, interleaved, load1, threads_text
from bench.fixtures import Fixtures, ModelFix, Sizes

log = logging.getLogger(__name__)
SEED = 1234
# the targets (studio / reference, median of paired repeats) per model; the hub shape is what
# users of the real base run
TARGETS = {"train": {"hub-shape": 2.0}, "gen": {"hub-shape": 2.5}, "ab": {"hub-shape": 2.5}}
DEFAULT_TARGET = {"train": 1.5, "gen": 2.0, "ab": 1.8}


def target(figure: str, label: str) -> float:
    return TARGETS[figure].get(label, DEFAULT_TARGET[figure])


def _say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def _measure(fig: Figure, threads: int, repeats: int, sides: list[str], run, say) -> None:
    """Every repeat runs each side once, in interleaved order: ``fig.add(side, run(side, rep))``,
    progress line ``say(side, rep, value)``; the load average is kept before and after."""
    from studio.model.fast import intra_op_threads

    fig.load = (load1(),)
    with intra_op_threads(threads):
        for rep, order in enumerate(interleaved(repeats, sides)):
            for side in order:
                value = run(side, rep)
                fig.add(side, value)
                _say(f"{say(side, rep, value)} (load {load1()})")
    fig.load += (load1(),)


def data_share(fx: Fixtures, tok, sizes: Sizes) -> tuple[Figure, object, list]:
    """Share of the training split's tokens and notes that one epoch trains on, per side."""
    from studio.model.tokenizer import decode

    prepared, cold = studio_side.prepare(fx.data_dir, tok, sizes.max_seq_len)
    _, warm = studio_side.prepare(fx.data_dir, tok, sizes.max_seq_len)
    files = [p.path for p in prepared.split.train]
    fig = Figure("share", "Training data seen per epoch (share of the train split's tokens)", "%", True,
                 target=None, target_text="studio 100 %", absolute_limit=99.99)
    streams = []  # the studio's token stream per training piece, in split order
    from studio.model.data import tokenize_pieces

    for _, ids in tokenize_pieces(prepared.split.train, tok).pieces:
        streams.append(ids)
    total_tokens = sum(len(s) for s in streams)
    total_notes = sum(int(decode(tok, s.tolist()).note_num()) for s in streams)
    window_tokens = sum(len(w) for w in prepared.train_windows)
    ref_items = reference.epoch_tokens(files, tok, sizes.max_seq_len)
    ref_tokens = sum(len(x) for x in ref_items)
    ref_notes = sum(int(decode(tok, x).note_num()) for x in ref_items)
    merged_first = sum(min(len(s), sizes.max_seq_len) for s in streams)
    fig.add("studio", 100.0 * window_tokens / total_tokens)
    fig.add("reference", 100.0 * ref_tokens / total_tokens)
    fig.add("studio, share of notes", 100.0, aux=True)
    fig.add("reference, share of notes", 100.0 * ref_notes / total_notes, aux=True)
    fig.notes += [
        f"train split: {len(files)} files from {len(prepared.split.sources['train'])} chorales, "
        f"{total_tokens} tokens, {total_notes} notes (all tracks); validation: "
        f"{len(prepared.split.val)} files",
        f"studio: {len(prepared.train_windows)} packed windows of ≤{sizes.max_seq_len} tokens hold "
        f"{window_tokens} tokens = every token once; preparing the data took {cold:.1f} s the first "
        f"time (tokenizing, cached) and {warm:.2f} s from the cache",
        f"reference: DatasetMIDI gives {len(ref_items)} items of {min(map(len, ref_items))}–"
        f"{max(map(len, ref_items))} tokens: with this tokenizer (no programs, one stream per track) "
        f"it keeps only each file's first track (the soprano), then its first {sizes.max_seq_len} tokens",
        f"had the reference merged the tracks first, its first-{sizes.max_seq_len}-token cut would still "
        f"keep only {100.0 * merged_first / total_tokens:.1f} % of the tokens",
    ]
    fig.status = "measured"
    return fig, prepared, files


def training(fx: Fixtures, tok, sizes: Sizes, prepared, files: list) -> list[Figure]:
    from studio.model.fast import intra_op_threads

    figs = []
    for label, m in fx.models.items():
        plan = sizes.train[label]
        base = reference.load_base(m.base_dir)
        studio_base = studio_side.load_base(m.base_dir, tok)
        seq = sizes.max_seq_len
        if int(base.config.n_positions) < seq:
            raise ValueError(f"{m.base_dir}: context {base.config.n_positions} < max_seq_len {seq}")
        accum = plan["accum"]
        goal = target("train", label)
        fig = Figure(f"train-{label}", f"Training, useful tokens/s — {label}", "tok/s", True,
                     headline=f"studio {plan['headline']}", target=goal, target_text=f"≥ {goal}×")
        fig.load = (load1(),)
        variants = [f"studio {v}" for v in plan["variants"]]
        sides = ["reference", "reference, bf16 autocast", *variants]
        with intra_op_threads(sizes.train_threads):
            for rep, order in enumerate(interleaved(plan["repeats"], sides)):
                for side in order:
                    if side.startswith("reference"):
                        r = reference.train_steps(base, files, tok, seq, 1, accum, plan["ref_steps"],
                                                  bf16="bf16" in side)
                    else:
                        r = studio_side.train_steps(studio_base, prepared, side.split(" ", 1)[1],
                                                    plan["studio_steps"])
                    fig.add(side, r["tokens"] / r["seconds"])
                    fig.add(f"{side} seconds", r["seconds"], aux=True)
                    _say(f"train {label} rep {rep + 1} {side}: {r['tokens']} tokens in {r['seconds']:.1f} s "
                         f"= {r['tokens'] / r['seconds']:.0f} tok/s (load {load1()})")
        fig.load += (load1(),)
        fig.notes.append(
            f"studio {plan['headline']} is `python -m studio train` with the guide's flags; recipe: the guide's LoRA (r 16, alpha 32, dropout 0.05 on c_attn/c_proj/c_fc), AdamW lr 2e-4, "
            f"20 warm-up steps, max_seq_len {seq}, {accum} sequences per optimizer step "
            f"(reference: batch 1 × accumulation {accum}, {plan['ref_steps']} steps per repeat; studio: "
            f"{plan['studio_steps']} step per repeat; 'AxB' = micro-batch A × accumulation B), "
            f"{threads_text(sizes.train_threads)} on both sides. Precision: the studio at its default "
            f"(`--precision auto`: bf16 autocast on a CPU with bf16 instructions, {_train_precision()} here); "
            "the reference in float32 as the guide runs it, and as a variant under the same bf16 autocast, "
            "so the table shows how much of the lead is precision and how much the studio's own path")
        fig.notes.append(
            "the studio's defaults: the frozen base's own dropout off (GPT-2's 0.1 on attention, residuals "
            "and embeddings; LoRA dropout 0.05 stays), which lets PyTorch use its fused attention kernel, and "
            "the base loaded with the fused tanh GELU (the same function as GPT-2's gelu_new, one kernel "
            "instead of ~8 ops), and LoRA dropout masks drawn with numpy's PCG64 (studio/training/dropout.py: the same "
            "Bernoulli masks, ~3x cheaper than torch's CPU sampler). '-basedrop' is `--base-dropout`, which "
            "keeps the base's dropout. On the bach "
            "data (2 epochs, 4×4, lr 1e-3) validation loss was 1.6912 without the base's dropout and 1.6928 "
            "with it, in half the time")
        figs.append(fig)
    return figs


def generation(fx: Fixtures, tok, sizes: Sizes) -> list[Figure]:
    figs = []
    for label, m in fx.models.items():
        base = reference.load_base(m.base_dir)
        n_new = min(sizes.gen_tokens, int(base.config.n_positions) - 1)
        name, folder = next(iter(m.adapters.items()))
        ref_model = reference.lora_copy(base, folder)
        models = {"reference": ref_model, "reference, bf16": reference.in_bf16(ref_model),
                  "studio": studio_side.load_for_generate(m.base_dir, folder),
                  "studio, fp32 decoding": studio_side.load_for_generate(m.base_dir, folder, "fp32")}
        goal = target("gen", label)
        fig = Figure(f"gen-{label}", f"Generation, tokens/s, {n_new} new tokens, batch 1, with adapter — {label}",
                     "tok/s", True, target=goal, target_text=f"≥ {goal}×")

        def run(side: str, rep: int) -> float:
            if side.startswith("reference"):
                return n_new / reference.generate(models[side], tok, n_new, SEED + rep)[0]
            prec = "fp32" if "fp32" in side else studio_side.DECODING
            return n_new / studio_side.generate(models[side], tok, n_new, SEED + rep, prec)[0]

        _measure(fig, sizes.decode_threads, sizes.gen_repeats[label], list(models), run,
                 lambda side, rep, v: f"generate {label} rep {rep + 1} {side}: {v:.1f} tok/s")
        fig.notes.append(f"both sides: top-k 50, top-p 0.95, temperature 1, EOS held off so each run makes "
                         f"exactly {n_new} tokens after BOS (the model's context is {base.config.n_positions} tokens); "
                         f"{threads_text(sizes.decode_threads)} on both sides")
        fig.notes.append("reference: PeftModel.generate, adapter unmerged (fp32; 'reference, bf16': the same "
                         "model cast to bf16); studio: `python -m studio generate --adapter-dir`'s path at its default "
                         f"decoding precision ({_decoding()} here: the base's weights packed, the adapter's update "
                         "added per row in fp32), through studio.model.generate.sample's decoder "
                         "(studio/model/fast.py, a preallocated KV cache); 'studio, fp32 decoding': the fp32 path, "
                         "the adapter merged into the CLI's own base once (merge_and_unload)")
        figs.append(fig)
    return figs


def ab(fx: Fixtures, tok, sizes: Sizes) -> list[Figure]:
    figs = []
    for label, m in fx.models.items():
        base = reference.load_base(m.base_dir)
        n_new = min(sizes.ab_tokens, int(base.config.n_positions) - 1)
        name, folder = next(iter(m.adapters.items()))
        lora = reference.lora_copy(base, folder)
        pairs = {"reference": (base, lora), "reference, bf16": (reference.in_bf16(base), reference.in_bf16(lora))}
        studio_model = studio_side.load_with_adapters(m.base_dir, {name: folder}, tok)
        goal = target("ab", label)
        fig = Figure(f"ab-{label}", f"A/B, seconds for one base + adapter pair, {n_new} tokens each — {label}",
                     "s", False, target=goal, target_text=f"≥ {goal}× faster")

        def run(side: str, rep: int) -> float:
            if side.startswith("reference"):
                return reference.ab_pair(*pairs[side], tok, n_new, SEED + rep)
            prec = "fp32" if "fp32" in side else studio_side.DECODING
            return studio_side.ab_pair(studio_model, name, tok, n_new, SEED + rep, prec)

        _measure(fig, sizes.decode_threads, sizes.ab_repeats[label],
                 ["reference", "reference, bf16", "studio", "studio, fp32 decoding"], run,
                 lambda side, rep, v: f"A/B {label} rep {rep + 1} {side}: {v:.2f} s")
        fig.notes.append("reference: base copy then LoRA copy, each with HF generate; studio: what the "
                         "Comparer runs (studio.model.generate.sample_sides): both sides in one batch through "
                         "studio/model/fast.py, row 0 the base, row 1 the adapter's low-rank update added on the fly, "
                         f"one generator per row seeded alike, at the default decoding precision ({_decoding()} here); "
                         "'reference, bf16': both copies cast to bf16; 'studio, fp32 decoding': the fp32 path; "
                         f"{threads_text(sizes.decode_threads)} on both sides")
        figs.append(fig)
    return figs


def _decoding() -> str:
    from studio.model.packed import resolve

    return resolve(studio_side.DECODING, "cpu")


def _train_precision() -> str:
    from studio.config import TrainConfig
    from studio.model.precision import resolve

    return resolve(TrainConfig("", "").precision, "cpu")


def memory(fx: Fixtures, sizes: Sizes) -> list[Figure]:
    figs = []
    for label, m in fx.models.items():
        fig = Figure(f"mem-{label}", "Memory, compare setup (base + 2 adapters, a 32-token A/B pair with each) "
                     f"— {label}", "MiB", False, target=0.6, fraction=True,
                     target_text="≤ 0.6× (setup's own memory)")
        fig.load = (load1(),)
        for rep, order in enumerate(interleaved(sizes.mem_repeats, ["reference", "studio"])):
            for side in order:
                r = _probe(side, m, sizes.decode_threads)
                fig.add(side, r["setup"] / 2**20)
                fig.add(f"{side} peak RSS", r["peak"] / 2**20, aux=True)
                fig.add(f"{side} after imports", r["after_imports"] / 2**20, aux=True)
                _say(f"memory {label} rep {rep + 1} {side}: setup {r['setup'] / 2**20:.0f} MiB, "
                     f"peak RSS {r['peak'] / 2**20:.0f} MiB")
        fig.load += (load1(),)
        fig.notes.append("each setup in a fresh process (python -m bench.memory_probe); 'setup' = peak RSS "
                         "minus the RSS after the same imports on both sides; the verdict uses it, the total "
                         "peak RSS is listed too")
        figs.append(fig)
    return figs


def _probe(side: str, m: ModelFix, threads: int) -> dict:
    cmd = [sys.executable, "-m", "bench.memory_probe", side, "--base", str(m.base_dir), "--threads", str(threads)]
    for name, folder in m.adapters.items():
        cmd += ["--adapter", f"{name}={folder}"]
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root)})
    if res.returncode != 0:
        raise RuntimeError(f"memory probe ({side}) failed: {res.stderr.strip()[-800:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def rendering(fx: Fixtures, sizes: Sizes) -> Figure:
    from symusic import Score

    from studio.audio.render import find_soundfont, piece_seconds

    sf2 = find_soundfont()
    score = Score(str(fx.piece))
    length = piece_seconds(score)
    span = f"{length / 60:.0f}-minute" if length >= 60 else f"{length:.0f}-second"
    fig = Figure("render", f"Rendering a {span} piece, × real time", "×", True,
                 headline="studio (warm synth)", target=1.0, target_text="≥ 50× real time and faster than the reference",
                 absolute_limit=50.0)
    fig.load = (load1(),)
    out = fx.work / "renders"
    out.mkdir(parents=True, exist_ok=True)
    sides = ["reference", "studio (cold synth)", "studio (warm synth)"]
    for rep, order in enumerate(interleaved(sizes.render_repeats, sides)):
        for side in order:
            wav = out / f"{side.split()[0]}-{rep}.wav"
            if side == "reference":
                sec = reference.render_cli(fx.piece, wav, sf2)
            else:
                sec = studio_side.render(score, wav, sf2, cold="cold" in side)
            fig.add(side, length / sec)
            _say(f"render rep {rep + 1} {side}: {sec:.2f} s = {length / sec:.0f}× real time")
    fig.load += (load1(),)
    fig.notes.append(f"soundfont {sf2.name}, 44.1 kHz stereo, 16-bit WAV written on both sides; the CLI loads "
                     "the soundfont on every run; the studio's synth stays loaded (cold = first render in a "
                     "process, soundfont load included). Both spend nearly all their time in FluidSynth's "
                     "voice synthesis; the studio saves only the process start and the soundfont load, so "
                     "its lead is small and within this machine's noise")
    return fig
