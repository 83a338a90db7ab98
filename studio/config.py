"""Where things live, and one dataclass per job (augment, train, generate).

The same dataclasses are filled by the CLI (``python -m studio …``) and by the UI, and are
saved with each run, so a run can always be reproduced from its ``config.json``.
Checks live in ``__post_init__`` and name the field that is wrong.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "xingjianll/midi-gpt2"
POCKET_NAME = "pocket"
POCKET_DIR = REPO_ROOT / "models" / "pocket-base"
# Inclusive MIDI pitches the studio's PerTok vocabulary can represent (miditok's default range;
# tests/test_models.py checks it against the tokenizer). Augmentation skips transpositions past it.
PITCH_RANGE = (21, 108)


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


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    bad = value is None or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        want = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {want}, got {value!r}")


@dataclass
class AugmentConfig(_Job):
    input_dir: str
    output_dir: str
    transpose: list[int] = field(default_factory=lambda: [-2, -1, 1, 2])  # semitones
    tempo: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])  # speed factors
    include_original: bool = False  # also write each piece unchanged

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
class TrainConfig(_Job):
    data_dir: str
    output_dir: str
    model_name: str = DEFAULT_BASE
    tokenizer_name: str | None = None  # None: the studio's PerTok config, built locally
    max_seq_len: int = 1024  # tokens per training window (the base's context)
    batch_size: int = 1
    grad_accum_steps: int = 16
    epochs: int = 6
    num_workers: int = 0
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20  # optimizer steps of linear warm-up
    val_split: float = 0.1  # share of *source pieces* held out
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Keep the frozen base's own dropout during LoRA training (off by default: see
    # studio.training.train.quiet_base_dropout; LoRA dropout above is the adapter's regulariser).
    base_dropout: bool = False
    max_grad_norm: float = 1.0
    seed: int = 42
    resume: bool = False
    # Early stopping (see studio/evaluation/metrics.py): patience in epochs on validation loss (0 = off),
    # and stop when samples copy the training pieces above this rate (0 = off).
    patience: int = 2
    copy_threshold: float = 0.5
    samples_per_epoch: int = 2  # seeded samples per epoch, for copy rate (0 = off)
    sample_tokens: int = 256
    device: str = "auto"  # auto | cpu | cuda | mps
    max_minutes: float = 0.0  # stop (and save) after this many minutes; 0 = no limit
    extra_data_dirs: list[str] = field(default_factory=list)  # blended in (train split only)
    # How augmented variants are used: "all" trains every variant every epoch (the guide's
    # pipeline); "rotate" trains each source piece once per epoch in one variant drawn anew each
    # epoch (studio.model.data.RotatingWindows), so an epoch is one pass over the album.
    variants: str = "all"
    # auto: bf16 autocast where the processor has bf16 instructions (studio/model/precision.py)
    precision: str = "fp32"
    use_rslora: bool = False  # LoRA scaling alpha/sqrt(r) instead of alpha/r (rank-stabilised LoRA)

    def __post_init__(self) -> None:
        for name in ("max_seq_len", "batch_size", "grad_accum_steps", "epochs", "lora_r", "lora_alpha"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.max_seq_len < 8:
            raise ValueError(f"max_seq_len must be at least 8 tokens, got {self.max_seq_len}")
        _check_positive("lr", self.lr)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("max_grad_norm", self.max_grad_norm)
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.val_split < 1:
            raise ValueError(f"val_split must be between 0 and 1, got {self.val_split}")
        if self.warmup_steps < 0 or self.num_workers < 0 or self.patience < 0:
            raise ValueError("warmup_steps, num_workers and patience must be >= 0")
        if not 0 <= self.copy_threshold <= 1:
            raise ValueError(f"copy_threshold must be in [0, 1], got {self.copy_threshold}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        if self.variants not in ("all", "rotate"):
            raise ValueError(f"variants must be all or rotate, got {self.variants!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")


def _help(default, text: str, **kw):
    """A dataclass field whose help text lives with its default (the CLI and the UI read both)."""
    return field(default=default, metadata={"help": text, **kw})


@dataclass
class SamplingConfig(_Job):
    """How a sample is drawn: one config for generate, eval, training samples and the Compare tab."""

    max_new_tokens: int = _help(1024, "tokens to generate (the prompt and these must fit the base's context)",
                                min=16, max=1023)
    # A sample plays for the length asked: EOS is held off until this many tokens. 384 makes 10 of
    # 10 seeded 512-token pocket samples reach 384 tokens (models/pocket-base/MODEL_CARD.md).
    min_new_tokens: int = _help(384, "EOS is not allowed before this many new tokens (capped at max_new_tokens)",
                                min=0, max=1023)
    temperature: float = _help(1.0, "sampling temperature: lower is safer, higher is wilder", min=0.1, max=2.0)
    top_p: float = _help(0.95, "nucleus sampling: keep the smallest set of tokens with this much probability",
                         min=0.05, max=1.0)
    top_k: int = _help(50, "keep only the k most likely tokens (0 = off)", min=0, max=200)
    seed: int | None = _help(None, "random seed; the same seed, model and prompt give the same piece")

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not isinstance(self.min_new_tokens, int) or self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
        _check_positive("temperature", self.temperature)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def min_tokens(self) -> int:
        """The minimum length in force: never more than the length asked."""
        return min(self.min_new_tokens, self.max_new_tokens)

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)

    def sampling(self) -> "SamplingConfig":
        """Just the sampling fields (of a subclass such as GenerateConfig)."""
        return SamplingConfig(**{f.name: getattr(self, f.name) for f in fields(SamplingConfig)})


@dataclass
class GenerateConfig(SamplingConfig):
    output: str = _help("out.mid", "MIDI file to write")
    adapter_dir: str | None = _help(None, "adapter folder (adapter-best); none: the base model alone")
    model_name: str | None = _help(None, "base: a hub id, a folder or pocket; none: the adapter's own base")
    prompt_midi: str | None = _help(None, "a MIDI file to continue")
    audio: str | None = _help(None, "also render to this .wav/.ogg/.flac")
    device: str = _help("auto", "auto, cpu, cuda or mps")
