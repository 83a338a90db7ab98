"""Where things live, and one dataclass per job (augment, train, generate).

The same dataclasses are filled by the CLI (``python -m studio …``) and by the UI, and are
saved with each run, so a run can always be reproduced from its ``config.json``.
Checks live in ``__post_init__`` and name the field that is wrong.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "xingjianll/midi-gpt2"
POCKET_NAME = "pocket"
POCKET_DIR = REPO_ROOT / "models" / "pocket-base"
# Inclusive MIDI pitches the studio's PerTok vocabulary can represent (miditok's default range;
# tests/test_models.py checks it against the tokenizer). Augmentation skips transpositions past it.
PITCH_RANGE = (21, 108)
# Each choice list lives here once: the fields' metadata (``choices``), their checks
# (``_Job.check_choices``), the command-line flags and the UI's dropdowns all read it.
DEVICES = ("auto", "cpu", "cuda", "mps")  # studio.model.models.pick_device
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")  # autocast while training: studio.model.precision
DECODE_PRECISIONS = ("auto", "fp32", "bf16", "int8")  # the base's weights while sampling: studio.model.packed


def data_dir() -> Path:
    """Root of all writable state (datasets, runs, adapters, renders, cache).

    ``STUDIO_DATA_DIR`` wins. On a Space (``SPACE_ID`` set): the persistent /data when the Space
    has storage, else a folder in the home directory, outside the app's checkout. Locally: the
    repository itself, whose state folders are git-ignored.
    """
    env = os.environ.get("STUDIO_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if os.environ.get("SPACE_ID"):
        if Path("/data").is_dir() and os.access("/data", os.W_OK):
            return Path("/data/studio")
        return Path.home() / ".cache" / "midi-lora-studio"  # lost on restart, like the Space's disk
    return REPO_ROOT


def adapters_dir() -> Path:
    return data_dir() / "adapters"


def datasets_dir() -> Path:
    return data_dir() / "datasets"


def runs_dir() -> Path:
    return data_dir() / "runs"


def cache_dir() -> Path:
    return data_dir() / "cache"


def renders_dir() -> Path:
    return data_dir() / "renders"


def bundled_adapters_dir() -> Path:
    """Adapters committed with the code (the demo adapter); read-only at run time."""
    return REPO_ROOT / "adapters"


class _Job:
    """Shared helpers: JSON round trip, ignoring unknown keys from newer versions."""

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_dict(json.loads(Path(path).read_text()))

    def check_choices(self) -> None:
        """Every field whose metadata lists ``choices`` holds one of them (the error names the field)."""
        for f in fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    bad = value is None or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        want = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {want}, got {value!r}")


def _help(default=None, text: str = "", factory=None, **kw):
    """A dataclass field whose help text lives with its default (the CLI and the UI read both)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text, **kw})
    return field(default=default, metadata={"help": text, **kw})


@dataclass
class AugmentConfig(_Job):
    input_dir: str = _help("", "folder of MIDI files (the album)")
    output_dir: str = _help("", "where the variants are written")
    transpose: list[int] = _help(text="semitone shifts (each piece gets every shift × every tempo)",
                                 factory=lambda: [-2, -1, 1, 2])
    tempo: list[float] = _help(text="speed factors", factory=lambda: [0.9, 1.0, 1.1])
    include_original: bool = _help(False, "also write each piece unchanged")

    def __post_init__(self) -> None:
        self.transpose = [int(t) for t in self.transpose]
        for t in self.transpose:
            if abs(t) > 24:
                raise ValueError(f"transpose: {t} semitones is more than two octaves")
        self.tempo = [float(f) for f in self.tempo]
        for f in self.tempo:
            _check_positive("tempo factor", f)
        if not self.transpose and not self.tempo and not self.include_original:
            raise ValueError("transpose, tempo: nothing to do (no transpositions, no tempo factors)")


@dataclass
class SamplingConfig(_Job):
    """How a sample is drawn: one config for generate, eval, training samples and the Compare tab."""

    # Past the base's context the window slides (studio/model/slide.py): any length, at the cost of
    # the model forgetting what is older than about half a window.
    max_new_tokens: int = _help(1024, "tokens to generate at most (a note is about 3-4 tokens; past the base's "
                                "context the model goes on from the recent past)", min=16, max=8192)
    # A sample plays for the length asked: EOS is held off until this many tokens. 384 makes 10 of
    # 10 seeded 512-token pocket samples reach 384 tokens (models/pocket-base/MODEL_CARD.md).
    min_new_tokens: int = _help(384, "EOS is not allowed before this many new tokens (capped at max_new_tokens)",
                                min=0, max=8192)
    # Lengths in music: decoding stops at whichever of tokens, seconds and bars comes first. The
    # slider stops at the Compare tab's audio cap (studio.audio.ogg.RENDER_MAX_SECONDS).
    seconds: float = _help(0.0, "play this many seconds of new music, no EOS before (0 = no limit; max new "
                           "tokens still caps it: a second of music takes about 25-130 tokens)", min=0.0, max=180.0)
    bars: int = _help(0, "play this many 4/4 bars of new music, no EOS before (0 = no limit; max new tokens "
                      "still caps it)", min=0, max=256)
    temperature: float = _help(1.0, "sampling temperature: lower is safer, higher is wilder", min=0.1, max=2.0)
    top_p: float = _help(0.95, "nucleus sampling: keep the smallest set of tokens with this much probability",
                         min=0.05, max=1.0)
    top_k: int = _help(50, "keep only the k most likely tokens (0 = off)", min=0, max=200)
    # Pitches only, over the last few notes: see studio.model.fast.penalize_repeats for why.
    repetition_penalty: float = _help(1.0, "discourage the pitches of the last few notes: 1 = off, 1.2 = gently, "
                                      "2 = strongly (rhythm and dynamics are left alone)", min=1.0, max=2.0)
    seed: int | None = _help(None, "random seed; the same seed, model and prompt give the same piece")
    # PerTok's time is relative: without this a sampled stream drifts off the album's grid, runs
    # over bar lines and leaves beats silent (studio/model/beat.py has the measurements' reasons).
    keep_time: bool = _help(True, "keep the pulse: notes start where the adapter's album starts them (the "
                            "base: any 32nd), never run past the bar line, and no whole beat is left silent")
    # Weight-only int8 keeps the base's held-out loss within 0.5 % of fp32 and decodes faster on a
    # CPU with bf16 instructions and on an AVX2 one (docs/trials/decoding/README.md);
    # elsewhere auto = fp32.
    precision: str = _help("auto", "decoding: the base's weights in fp32, bf16 or int8 (auto: int8 on an x86 CPU "
                           "with AVX2, AVX-512 or bf16 instructions, else fp32; adapters always fp32; "
                           "studio/model/packed.py)",
                           choices=DECODE_PRECISIONS)

    def __post_init__(self) -> None:
        self.check_choices()  # precision
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not isinstance(self.min_new_tokens, int) or self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
        _check_positive("temperature", self.temperature)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not isinstance(self.bars, int) or self.bars < 0:
            raise ValueError(f"bars must be an integer >= 0 (0 = no limit), got {self.bars!r}")
        _check_positive("seconds", self.seconds, allow_zero=True)
        if not 1.0 <= self.repetition_penalty <= 2.0:  # NaN fails too
            raise ValueError(f"repetition_penalty must be between 1 (off) and 2, got {self.repetition_penalty}")

    @property
    def min_tokens(self) -> int:
        """The minimum length in force: never more than the length asked."""
        return min(self.min_new_tokens, self.max_new_tokens)

    @classmethod
    def help(cls, name: str) -> str:
        return cls.knob(name)["help"]

    @classmethod
    def knob(cls, name: str) -> dict:
        """{default, help, min, max} of a field: what a CLI flag or a UI slider needs."""
        f = next(f for f in fields(cls) if f.name == name)
        return {"default": f.default, "help": f.metadata.get("help", ""), "min": f.metadata.get("min"),
                "max": f.metadata.get("max")}

    def sampling(self) -> "SamplingConfig":
        """Just the sampling fields (of a subclass such as GenerateConfig)."""
        return SamplingConfig(**{f.name: getattr(self, f.name) for f in fields(SamplingConfig)})


RECIPE_EPOCHS, MAX_PLANNED_EPOCHS = 6, 12  # epochs 0: the plans of training/schedule.py


@dataclass
class TrainConfig(_Job):
    data_dir: str = _help("", "folder of (augmented) MIDI files to train on")
    output_dir: str = _help("", "where adapter-best, adapter-last, epochs/ and training_meta.json go")
    model_name: str = _help(DEFAULT_BASE, "base: a hub id, a local folder or pocket")
    tokenizer_name: str | None = _help(None, "tokenizer.json, a folder holding one, or a hub id (default: built locally)")
    max_seq_len: int = _help(1024, "tokens per training window; 1024 is the base's context, smaller is faster")
    batch_size: int = _help(1, "windows per micro-batch (CPU / Apple M1: 1 with 16 accumulation steps; RTX 4090: 4 with 4)")
    # 4, not the guide's 16: an album of 10-15 pieces makes a few dozen windows an epoch, and 16
    # of them per step leaves 3-8 steps an epoch; docs/RECIPE.md has the measurements
    grad_accum_steps: int = _help(4, "micro-batches summed per optimizer step: batch × this = effective batch")
    epochs: int = _help(0, f"0 = planned to --budget-minutes here: {MAX_PLANNED_EPOCHS} at half the peak --lr if they "
                        f"fit, else {RECIPE_EPOCHS}, else fewer with LoRA+; N = exactly N (guide: 4–10 for small albums)")
    budget_minutes: float = _help(12.0, "with --epochs 0: minutes the planned epochs fill (from the speed estimate, "
                                  "corrected each epoch); the learning rate reaches zero and the run stops there")
    num_workers: int = _help(0, "data-loader worker processes")
    lr: float = _help(2e-3, "AdamW learning rate (peak of the warm-up/decay schedule); the guide's 2e-4 "
                      "barely moves a small base's LoRA in the steps a CPU affords")
    weight_decay: float = _help(0.01, "AdamW weight decay")
    lora_plus_ratio: float = _help(0.0, "LoRA+: B learns this many times faster than A; 1 = plain LoRA (the guide); "
                                   "0 = planned: 4 where --epochs 0 plans under six epochs, or barely six, else 1")
    warmup_steps: int = _help(20, "optimizer steps of linear learning-rate warm-up")
    val_split: float = _help(0.1, "share of source pieces held out; augmented variants stay with their piece")
    lora_r: int = _help(16, "LoRA rank: 8–16 for small datasets (higher = more capacity, more overfit)")
    lora_alpha: int = _help(32, "scales the LoRA update; usually 2× the rank")
    lora_dropout: float = _help(0.05, "dropout on the LoRA input: regularises against overfitting small albums")
    # off by default: LoRA dropout is the adapter's regulariser (studio.training.lora.quiet_base_dropout)
    base_dropout: bool = _help(False, "keep the frozen base's own dropout while training (slower)")
    max_grad_norm: float = _help(1.0, "gradient clipping norm")
    seed: int = _help(42, "same seed, data and settings → the same adapter")
    resume: bool = _help(False, "continue an interrupted run from its checkpoint")
    patience: int = _help(2, "stop after this many epochs whose validation loss is clearly above its best "
                          "(more than --stop-tolerance); 0 = off")
    # An album holds out one or two pieces, a few windows: Haydn's one movement swung by up to 2 % from
    # epoch to epoch while it still improved over six epochs (docs/RECIPE.md).
    stop_tolerance: float = _help(0.01, "share above the best validation loss an epoch may be without "
                                  "counting against --patience (noise of a small validation set)")
    copy_threshold: float = _help(0.5, "stop when the epoch's samples copy the training pieces above this rate; 0 = off")
    samples_per_epoch: int = _help(2, "seeded samples after each epoch (copy rate, texture gap; to hear it evolve)")
    sample_tokens: int = _help(256, "tokens per epoch sample")
    calibrate_rows: int = _help(8, "after training, samples per bar-memory strength tried to fit the sampler's "
                                "bar memory to the album's groove (studio/training/calibrate.py); 0 = the fixed one")
    # drawn as any sample is (the --sample-* flags), at seeds seed, seed+1, ... so runs stay comparable
    sampling: SamplingConfig = _help(text="how the epoch samples are drawn (max_new_tokens and seed: "
                                     "sample_tokens and seed)", factory=SamplingConfig)
    device: str = _help("auto", "where it runs: auto picks cuda, then mps, then cpu", choices=DEVICES)
    max_minutes: float = _help(0.0, "stop and save after this many minutes of training; 0 = no limit")
    extra_data_dirs: list[str] = _help(text="folders blended into training (train split only)", factory=list)
    # How augmented variants are used (studio.model.data.RotatingWindows).
    variants: str = _help("rotate", "augmented variants: all of them every epoch (the guide's), or rotate: each piece "
                          "once per epoch in a variant drawn anew each epoch", choices=("all", "rotate"))
    precision: str = _help("auto", "auto: bf16 autocast where the processor has bf16 instructions "
                           "(studio/model/precision.py)", choices=TRAIN_PRECISIONS)
    use_rslora: bool = _help(False, "rank-stabilised LoRA scaling (alpha/sqrt(r) instead of alpha/r)")

    @classmethod
    def help(cls, name: str) -> str:
        return cls.__dataclass_fields__[name].metadata.get("help", "")

    def __post_init__(self) -> None:
        if isinstance(self.sampling, dict):  # from a saved config.json
            self.sampling = SamplingConfig.from_dict(self.sampling)
        for name in ("max_seq_len", "batch_size", "grad_accum_steps", "lora_r", "lora_alpha"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.epochs, int) or self.epochs < 0 or (self.epochs == 0 and not self.budget_minutes > 0):
            raise ValueError(f"epochs must be 0 (planned to budget_minutes, above 0) or a positive integer, "
                             f"got epochs {self.epochs!r}, budget_minutes {self.budget_minutes!r}")
        if self.max_seq_len < 8:
            raise ValueError(f"max_seq_len must be at least 8 tokens, got {self.max_seq_len}")
        _check_positive("lr", self.lr)
        _check_positive("lora_plus_ratio", self.lora_plus_ratio, allow_zero=True)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("max_grad_norm", self.max_grad_norm)
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.val_split < 1:
            raise ValueError(f"val_split must be between 0 and 1, got {self.val_split}")
        if self.warmup_steps < 0 or self.num_workers < 0 or self.patience < 0:
            raise ValueError("warmup_steps, num_workers and patience must be >= 0")
        if not 0 <= self.stop_tolerance < 1:
            raise ValueError(f"stop_tolerance must be in [0, 1), got {self.stop_tolerance}")
        if not 0 <= self.copy_threshold <= 1:
            raise ValueError(f"copy_threshold must be in [0, 1], got {self.copy_threshold}")
        self.check_choices()  # device, variants, precision


@dataclass
class GenerateConfig(SamplingConfig):
    output: str = _help("out.mid", "MIDI file to write")
    adapter_dir: str | None = _help(None, "adapter folder (adapter-best); none: the base model alone")
    model_name: str | None = _help(None, "base: a hub id, a folder or pocket; none: the adapter's own base")
    prompt_midi: str | None = _help(None, "a MIDI file to continue")
    audio: str | None = _help(None, "also render to this .wav/.ogg/.flac")
    # checked with the sampling fields' choices by SamplingConfig.__post_init__
    device: str = _help("auto", "where it runs: auto picks cuda, then mps, then cpu", choices=DEVICES)


@dataclass
class InfillConfig(SamplingConfig):
    """Regenerate a passage (studio.model.infill): K candidates for [start, end), ranked by what follows."""
    input: str = _help("", "the MIDI file holding the passage")
    start: float = _help(0.0, "where the passage starts, in bars or seconds from the piece's beginning (0)")
    end: float = _help(1.0, "where it ends (excluded): start=8 end=12 in bars is the 9th to the 12th bar")
    unit: str = _help("bars", "bars (4-beat bars, as the tokenizer counts them) or seconds", choices=("bars", "seconds"))
    candidates: int = _help(4, "candidates sampled in one batch, ranked by the likelihood of what follows", min=1, max=8)
    adapter_dir: str | None = _help(None, "adapter folder (adapter-best); none: the base model alone")
    model_name: str | None = _help(None, "base: a hub id, a folder or pocket; none: the adapter's own base")
    output_dir: str = _help("infill", "where candidate_1.mid (the best) … candidate_K.mid are written")
    max_new_tokens: int = _help(512, "at most this many tokens per candidate (its end stops it sooner)", min=16, max=1023)
    device: str = _help("auto", "where it runs: auto picks cuda, then mps, then cpu", choices=DEVICES)

    def __post_init__(self) -> None:
        super().__post_init__()  # sampling fields, unit and device choices
        if not (math.isfinite(self.start) and math.isfinite(self.end) and 0 <= self.start < self.end):
            raise ValueError(f"start, end: need 0 <= start < end, got start={self.start!r} end={self.end!r}")
        if not isinstance(self.candidates, int) or not 1 <= self.candidates <= 8:  # the UI's and API's cap too
            raise ValueError(f"candidates must be an integer 1..8, got {self.candidates!r}")


# ---------------------------------------------------------------- command-line flags from the configs

_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str, "float | None": float}


def add_config_flags(p, cls, *, skip: tuple = (), defaults: dict | None = None, required_later: tuple = (),
                     prefix: str = "") -> None:
    """One ``--flag`` per field of the dataclass ``cls``, its default, type, choices and help read from
    the field, so a default and its explanation live in one place (the UI reads the same metadata).

    ``skip``: fields the command sets itself (eval's ``--seed`` is a first seed); ``defaults``: the
    command's own defaults; ``required_later``: fields left None here, checked by the command (e.g.
    unless --config); ``prefix``: flags ``--PREFIX-NAME`` (dest ``PREFIX_NAME``), for a config
    nested in another (the train command's ``--sample-*``). Nested configs are skipped: the
    command adds them with a prefix. ``p``: a parser or an argument group.
    """
    import argparse

    made = []
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()
        if f.name in skip or is_dataclass(default):
            continue
        made.append(f.name)
        if defaults and f.name in defaults:
            default = defaults[f.name]
        name = f"{prefix}_{f.name}" if prefix else f.name
        flag = f"--{name.replace('_', '-')}"
        kw = {"help": f.metadata.get("help"), "default": None if f.name in required_later else default}
        kind = str(f.type)
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if kind.startswith("list["):
            kw.update(nargs="*", type=_TYPES[kind[5:-1]])
        else:
            kw["type"] = _TYPES.get(kind, str)
        kw["choices"] = f.metadata.get("choices")
        p.add_argument(flag, **kw)
    # which fields these flags fill: a skipped field's name may be the command's own flag (eval's
    # --seed is a first seed), which config_from_args must not read into the config
    p.set_defaults(**{_made_key(cls, prefix): tuple(made)})


def _made_key(cls, prefix: str) -> str:
    return f"_{prefix}_{cls.__name__}_fields"


def config_from_args(cls, args, prefix: str = "", **overrides):
    """``cls`` filled from the flags ``add_config_flags`` made for it, then ``overrides``; a field
    with no flag (skipped) or a None value keeps the field's default."""
    made = getattr(args, _made_key(cls, prefix), [f.name for f in fields(cls)])
    kw = {}
    for name in made:
        value = getattr(args, f"{prefix}_{name}" if prefix else name, None)
        if value is not None:
            kw[name] = value
    return cls(**{**kw, **overrides})


def add_sampling_flags(p, **kw) -> None:
    """The sampling flags of every command that samples (generate, eval, base-report, train's epoch
    samples): one per SamplingConfig field, so a new field is a new flag everywhere."""
    add_config_flags(p, SamplingConfig, **kw)


def sampling_from_args(args, prefix: str = "", **overrides) -> SamplingConfig:
    return config_from_args(SamplingConfig, args, prefix, **overrides)
