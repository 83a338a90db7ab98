"""How long a training recipe takes on this machine, said before it runs (``train --dry-run``, the Train tab).

The data side is exact: ``prepare`` as ``train`` calls it gives the windows an epoch trains on (with
``variants=rotate`` one variant of each piece, studio.model.data.RotatingWindows), hence its tokens,
micro-batches and optimizer steps. The time side comes from a probe of this machine: a few real LoRA
steps of the chosen base at the chosen precision and window length, one validation batch, a short
decode as the epoch samples do, an adapter and a checkpoint save. The probe is cached per (base,
shape, precision, window, rank, batch, device or CPU model, threads) under ``cache_dir()/speed``, so a
second estimate reads it and measures nothing. ``estimate(cfg) -> Estimate``; ``Estimate.describe()``
words it.

What it leaves out: early stopping (patience, copying samples) can end a run sooner, and the
one-time measurements of the album's references on the first epoch (copy rate, texture, groove) are
not counted; under several processes (accelerate) each trains its share.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from studio.config import DEFAULT_BASE, POCKET_NAME, SamplingConfig, TrainConfig, cache_dir
from studio.model.data import collate, epoch_windows, prepare
from studio.model.precision import resolve as resolve_precision
from studio.training import loop, schedule
from studio.training.calibrate import calibration_tokens
from studio.training.plan import loop_config
from studio.training.schedule import MAX_EPOCHS, epochs_that_fit, first_lora_plus, peak_scale, planned_epochs

PROBE_VERSION = 2  # bump when the training step changes enough that cached speeds no longer hold
PROBE_SECONDS = 2.0  # timed training steps for at least this long, after one warm-up step
PROBE_MIN_STEPS, PROBE_MAX_STEPS = 3, 20
# decoded twice: the first pays the one-time setup (weight packing, kernels), the second is timed
PROBE_DECODE_TOKENS = 32
SAVES_PER_EPOCH = 3  # epochs/NN, adapter-last and (when it improves) adapter-best; plus one checkpoint


@dataclass
class Speed:
    """What the probe measured (seconds), cached as JSON."""

    micro_s: float  # forward + backward of one micro-batch of batch_size full windows
    optimizer_s: float  # gradient clipping + AdamW step + zero_grad
    eval_batch_s: float  # validation forward of one batch of max(batch_size, 4) windows
    decode_tokens_per_s: float  # the epoch samples' decoding (studio.model.generate.sample)
    decode_setup_s: float  # the first decode's one-time cost
    save_s: float  # one adapter folder
    checkpoint_s: float  # LoRA weights + optimizer state
    load_s: float  # loading the base and wrapping it with LoRA
    steps: int  # timed training steps behind micro_s (their median: a busy machine's spikes do not count)
    measured_at: str = ""
    calibrate_step_s: float = 0.0  # one decoding step of the bar-memory fit's batch (studio.training.calibrate)


@dataclass
class Estimate:
    """The recipe on this dataset and machine: the data an epoch trains on, and the minutes it takes."""

    base: str
    device: str  # "cpu: Intel(R) Xeon(R) ..., 2 threads" or the GPU's name
    precision: str  # resolved: fp32 or bf16
    max_seq_len: int  # after clipping to the base's context
    batch_size: int
    grad_accum_steps: int
    epochs: int
    variants: str
    pieces: dict  # {"train": n, "val": n} files
    tokens_per_epoch: int  # tokens the training sees in one epoch
    windows_per_epoch: int
    micro_batches_per_epoch: int
    steps_per_epoch: int  # optimizer steps
    val_windows: int
    train_epoch_s: float
    validation_s: float  # one pass over the validation windows
    samples_s: float  # samples_per_epoch × sample_tokens decoded
    calibration_s: float  # after the last epoch: the bar memory fitted to the album (calibrate_rows)
    saves_s: float  # adapters and checkpoints written each epoch
    startup_s: float  # tokenizer, data (token cache warm), base and LoRA
    samples_per_epoch: int = 0
    sample_tokens: int = 0
    max_minutes: float = 0.0  # the time limit the run keeps (max_minutes, or the budget)
    budget_minutes: float = 0.0  # > 0: ``epochs`` is the plan that fills it (TrainConfig.epochs 0)
    lora_plus_ratio: float = 0.0  # TrainConfig's: 0 lets a plan under six train with LoRA+
    speed: Speed | None = None
    probed: bool = False  # True: measured by this call; False: read from the cache
    cache_file: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def planned_lora_plus(self) -> float:
        """The LoRA+ ratio the run's first plan starts with (``lora_plus_ratio`` 0)."""
        return first_lora_plus(self.epoch_s, self.budget_minutes * 60) if self.budget_minutes else 1.0

    @property
    def epoch_s(self) -> float:
        return self.train_epoch_s + self.validation_s + self.samples_s + self.saves_s

    @property
    def loop_s(self) -> float:
        """The training loop: every epoch, or the time limit and the validation that closes it."""
        full = self.epochs * self.epoch_s + (self.speed.decode_setup_s if self.samples_per_epoch else 0.0)
        if self.max_minutes and self.max_minutes * 60 < full:
            return self.max_minutes * 60 + self.validation_s + self.saves_s
        return full

    @property
    def total_s(self) -> float:
        return self.startup_s + self.loop_s + self.calibration_s

    @property
    def epochs_in_limit(self) -> float | None:
        """Epochs the time limit allows (None: no limit, or it is not reached)."""
        if not self.max_minutes or self.max_minutes * 60 >= self.epochs * self.epoch_s:
            return None
        return self.max_minutes * 60 / max(self.epoch_s, 1e-9)

    @property
    def train_tokens_per_s(self) -> float:
        return self.batch_size * self.max_seq_len / max(self.speed.micro_s, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "epoch_s": self.epoch_s, "total_s": self.total_s,
                "epochs_in_limit": self.epochs_in_limit}

    def describe(self) -> str:
        """The estimate in words, a few lines (what ``train --dry-run`` prints and the Train tab shows)."""
        rotate = ", one variant of each piece" if self.variants == "rotate" else ""
        lines = [
            f"estimate for {self.base} on {self.device}, {self.precision}, windows of {self.max_seq_len} tokens:",
            f"  per epoch: {self.tokens_per_epoch:,} tokens{rotate} ({self.pieces['train']} training files), "
            f"{self.windows_per_epoch} windows, {self.steps_per_epoch} optimizer steps of "
            f"{self.grad_accum_steps} × {self.batch_size} windows; validation {self.val_windows} windows",
            f"  time per epoch: {_clock(self.epoch_s)} = training {_clock(self.train_epoch_s)} "
            f"({_rate(self.train_tokens_per_s)} tokens/s) + validation {_clock(self.validation_s)}"
            + (f" + {self.samples_per_epoch} samples of {self.sample_tokens} tokens {_clock(self.samples_s)} "
               f"({_rate(self.speed.decode_tokens_per_s)} tokens/s)" if self.samples_per_epoch else "")
            + f" + saving {_clock(self.saves_s)}",
        ]
        limit = self.epochs_in_limit
        if limit is not None:
            lines.append(f"  in all: {_clock(self.total_s)}: the time limit of {self.max_minutes:g} minutes stops it "
                         f"after about {limit:.1f} of {self.epochs} epochs (start-up {_clock(self.startup_s)})")
        else:
            planned = (f", as many as fill the {self.budget_minutes:g}-minute budget"
                       + (f" (at most {MAX_EPOCHS})" if self.epochs == MAX_EPOCHS else "")
                       + (f" at {peak_scale(self.epochs):.2g}× the learning rate"
                          if peak_scale(self.epochs) != 1 else "")
                       + (f", the B matrices {self.planned_lora_plus:g}× as fast (LoRA+)"
                          if self.planned_lora_plus != 1 and not self.lora_plus_ratio else "")
                       if self.budget_minutes else "")
            lines.append(f"  in all: {_clock(self.total_s)} for {self.epochs} epochs{planned}, with start-up "
                         f"{_clock(self.startup_s)} (early stopping may end it sooner)")
        if self.calibration_s:
            lines.append(f"  then the bar memory fitted to the album's groove: {_clock(self.calibration_s)}")
        how = (f"measured now ({self.speed.steps} training steps)" if self.probed
               else f"measured {self.speed.measured_at}, cached")
        lines.append(f"  speed: {how} in {self.cache_file}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _rate(per_s: float) -> str:
    return f"{per_s:.1f}" if per_s < 10 else f"{per_s:,.0f}"


def _clock(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def estimate(cfg: TrainConfig, refresh: bool = False, probe_seconds: float = PROBE_SECONDS) -> Estimate:
    """The estimate for ``cfg`` on this machine; probes its speed unless the cache holds it (``refresh``:
    probe anyway). Reads the dataset and fills the token cache as training would; writes nothing into
    ``cfg.output_dir``. ValueError / FileNotFoundError as ``train`` gives them for a bad dataset or base."""
    from studio.model.models import pick_device
    from studio.model.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    tok = load_tokenizer(cfg.tokenizer_name)
    device = pick_device(cfg.device)
    name, shape = base_identity(cfg)
    seq_len = min(cfg.max_seq_len, int(shape.get("n_positions") or cfg.max_seq_len))
    prepared = _prepare(cfg, tok, seq_len)
    startup = time.perf_counter() - t0
    windows = epoch_windows(prepared.train_windows, 0)
    lcfg = loop_config(cfg)
    key = probe_key(cfg, name, shape, seq_len, device)
    path = cache_dir() / "speed" / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]}.json"
    speed = None if refresh else _read(path, key)
    probed = speed is None
    if probed:
        speed = probe(cfg, tok, device, seq_len, windows, probe_seconds)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"key": key, "speed": asdict(speed)}, indent=2))
        tmp.replace(path)
    tokens = int(sum(len(w) for w in windows))
    micro = math.ceil(len(windows) / cfg.batch_size)
    steps = loop.steps_per_epoch(len(windows), lcfg)
    train_s = tokens / (cfg.batch_size * seq_len) * speed.micro_s + steps * speed.optimizer_s
    eval_bs = max(cfg.batch_size, 4)  # as loop.evaluate is called
    mid_epoch_ckpts = int(train_s // loop.CHECKPOINT_EVERY_S)
    notes = [f"max_seq_len clipped to the base's context, {seq_len}"] if seq_len < cfg.max_seq_len else []
    est = Estimate(
        base=name, device=key["device"], precision=key["precision"], max_seq_len=seq_len, batch_size=cfg.batch_size,
        grad_accum_steps=cfg.grad_accum_steps, epochs=lcfg.epochs, variants=cfg.variants,
        pieces={"train": len(prepared.split.train), "val": len(prepared.split.val)}, tokens_per_epoch=tokens,
        windows_per_epoch=len(windows), micro_batches_per_epoch=micro, steps_per_epoch=steps,
        val_windows=len(prepared.val_windows), train_epoch_s=train_s,
        validation_s=math.ceil(len(prepared.val_windows) / eval_bs) * speed.eval_batch_s,
        samples_s=cfg.samples_per_epoch * cfg.sample_tokens / max(speed.decode_tokens_per_s, 1e-9),
        calibration_s=calibration_tokens(int(shape.get("n_positions") or seq_len)) * speed.calibrate_step_s
        if cfg.calibrate_rows else 0.0,
        saves_s=SAVES_PER_EPOCH * speed.save_s + (1 + mid_epoch_ckpts) * speed.checkpoint_s,
        startup_s=startup + speed.load_s, samples_per_epoch=cfg.samples_per_epoch, sample_tokens=cfg.sample_tokens,
        max_minutes=lcfg.max_minutes, budget_minutes=lcfg.budget_minutes, lora_plus_ratio=lcfg.lora_plus_ratio,
        speed=speed, probed=probed,
        cache_file=str(path), notes=notes)
    if est.budget_minutes:  # the run's first plan is this one (studio/training/plan.py, first_plan)
        est.epochs = planned_epochs(epochs_that_fit(est.epoch_s, est.budget_minutes * 60))
    return est


def _prepare(cfg: TrainConfig, tok, seq_len: int):
    """``prepare`` as ``train`` calls it. A first call may tokenize the album (the token cache was cold);
    the run that follows will not, so the start-up counts a second, warm call."""
    args = (cfg.data_dir, tok, seq_len, cfg.val_split, cfg.seed, cfg.extra_data_dirs)
    t = time.perf_counter()
    prepared = prepare(*args, rotate=cfg.variants == "rotate")
    if time.perf_counter() - t > 1.0:
        prepared = prepare(*args, rotate=cfg.variants == "rotate")
    return prepared


def base_identity(cfg: TrainConfig) -> tuple[str, dict]:
    """(the base train() would load, its shape) from its config.json, without loading the weights;
    the same fallback to the pocket base as train() when the hub base cannot be had."""
    from studio.model import hub
    from studio.model.models import local_alternatives, resolve_base

    try:
        name, folder = resolve_base(cfg.model_name)
    except hub.HubUnavailable:
        if cfg.model_name != DEFAULT_BASE or POCKET_NAME not in local_alternatives():
            raise
        name, folder = resolve_base(POCKET_NAME)
    config = json.loads((Path(folder) / "config.json").read_text())
    keys = ("model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    return name, {k: config.get(k) for k in keys}


def machine() -> str:
    """The processor model, the kernels torch picked for it and the thread count on a CPU (what a cached
    speed belongs to: ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU measured 1,435 against 1,711 tokens/s)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}, {torch.backends.cpu.get_cpu_capability()} kernels, {torch.get_num_threads()} threads"


def probe_key(cfg: TrainConfig, name: str, shape: dict, seq_len: int, device: torch.device) -> dict:
    """Everything the measured speed depends on; a change in any of them probes again."""
    where = f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else (
        machine() if device.type == "cpu" else device.type)
    return {"base": name, "shape": shape, "precision": resolve_precision(cfg.precision, device),
            "max_seq_len": seq_len, "lora_r": cfg.lora_r, "batch_size": cfg.batch_size,
            "base_dropout": cfg.base_dropout, "calibrate_rows": cfg.calibrate_rows, "device": where,
            "torch": torch.__version__, "probe": PROBE_VERSION}


def _read(path: Path, key: dict) -> Speed | None:
    try:
        blob = json.loads(path.read_text())
        return Speed(**blob["speed"]) if blob.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):  # missing, half-written or from another version
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def _probe_batch(windows, n: int, seq_len: int, device) -> dict:
    """``n`` full windows (the shape nearly every training micro-batch has), from the album itself."""
    full = [w for w in windows if len(w) == seq_len] or list(windows)
    rows = [torch.as_tensor(full[i % len(full)], dtype=torch.long) for i in range(n)]
    return {k: v.to(device) for k, v in collate(rows).items()}


def probe(cfg: TrainConfig, tok, device: torch.device, seq_len: int, windows, probe_seconds: float) -> Speed:
    """Measure this machine: real LoRA steps of the chosen base (one warm-up, then at least
    ``probe_seconds``), a validation batch, a short decode, an adapter and a checkpoint save."""
    from studio.model.models import load_base
    from studio.training.lora import lora_model

    load_s = time.perf_counter()
    base, info = load_base(cfg.model_name, tok, device, fallback=cfg.model_name == DEFAULT_BASE)
    model = lora_model(base, cfg)
    load_s = time.perf_counter() - load_s
    lcfg = loop_config(cfg)
    optimizer, scheduler = schedule.make_optimizer(model, lcfg, 100, device)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = _probe_batch(windows, cfg.batch_size, seq_len, device)
    model.train()

    def micro():  # as loop._Run.micro_step
        with loop.autocast_for(device, lcfg.precision):
            loss = model(**batch).loss
        (loss / lcfg.grad_accum_steps).backward()

    def step():  # as loop._Run.optimizer_step
        torch.nn.utils.clip_grad_norm_(params, lcfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    micro()  # warm-up: first-call allocations and kernel choices
    step()
    micro_s, step_s = [], []
    while len(micro_s) < PROBE_MIN_STEPS or (sum(micro_s) + sum(step_s) < probe_seconds
                                             and len(micro_s) < PROBE_MAX_STEPS):
        micro_s.append(_timed(micro, device))
        step_s.append(_timed(step, device))
    eval_rows = [batch["input_ids"][0, : int(batch["attention_mask"][0].sum())].cpu()] * max(cfg.batch_size, 4)
    loop.evaluate(model, eval_rows, len(eval_rows), device)  # warm-up: a validation pass is many batches
    eval_s = _timed(lambda: loop.evaluate(model, eval_rows, len(eval_rows), device), device)
    tps, setup = _probe_decode(model, tok, device)
    calibrate_s = _probe_calibration(model, tok, device, cfg.calibrate_rows)
    save_s, ckpt_s = _probe_saves(model, optimizer, scheduler, tok, info)
    return Speed(micro_s=statistics.median(micro_s), optimizer_s=statistics.median(step_s), eval_batch_s=eval_s,
                 decode_tokens_per_s=tps, decode_setup_s=setup, save_s=save_s, checkpoint_s=ckpt_s, load_s=load_s,
                 steps=len(micro_s), measured_at=time.strftime("%Y-%m-%d %H:%M"), calibrate_step_s=calibrate_s)


def _probe_decode(model, tok, device) -> tuple[float, float]:
    """(tokens/s, one-time setup s) of the epoch samples' decoding, as LoraHooks._sample_epoch calls it."""
    from studio.model.generate import sample

    model.eval()

    def run(n: int):
        return sample(model, tok, [tok["BOS_None"]], SamplingConfig(max_new_tokens=n, min_new_tokens=n), seed=0)

    with torch.random.fork_rng():
        first = _timed(lambda: run(PROBE_DECODE_TOKENS), device)
        timed = _timed(lambda: run(PROBE_DECODE_TOKENS), device)
    model.train()
    return PROBE_DECODE_TOKENS / max(timed, 1e-9), max(0.0, first - timed)


def _probe_calibration(model, tok, device, rows: int) -> float:
    """Seconds a decoding step of the bar-memory fit's batch takes (every strength × ``rows``
    rows at once, as studio.training.calibrate draws them); 0 when there is none to make."""
    from studio.model import fast
    from studio.model.beat import REPEAT_CHOICES
    from studio.model.generate import sample_sides

    if not rows or not fast.supports(model):
        return 0.0
    n = len(REPEAT_CHOICES) * rows
    sampling = SamplingConfig(max_new_tokens=PROBE_DECODE_TOKENS, min_new_tokens=PROBE_DECODE_TOKENS)
    model.eval()
    with torch.random.fork_rng():
        timed = _timed(lambda: sample_sides(model, tok, [tok["BOS_None"]], ["default"] * n, sampling,
                                            seed=list(range(n))), device)
    model.train()
    return timed / PROBE_DECODE_TOKENS


def _probe_saves(model, optimizer, scheduler, tok, info) -> tuple[float, float]:
    """(adapter folder s, checkpoint s), written into a temporary folder (never the run's)."""
    from studio.model.models import save_adapter
    from studio.training import checkpoint

    with tempfile.TemporaryDirectory(prefix="studio-probe-") as tmp:
        save_s = _timed(lambda: save_adapter(model, Path(tmp) / "adapter", tok, info), torch.device("cpu"))
        ckpt_s = _timed(lambda: checkpoint.save(Path(tmp), model, optimizer, scheduler, {}), torch.device("cpu"))
    return save_s, ckpt_s
