"""Many listeners at once: Generate calls that arrive together are decoded as ONE batch.

Decoding a small GPT-2 on a CPU is bound by per-token overhead, not arithmetic: four variations
of a side cost 1.48× one (``studio.model.fast``). Served one after another, eight listeners wait
for eight decodes; batched, every waiting caller's rows go through the model together, one pass
per token for all of them.

A call is a ``Request``: its rows (sides × variations, each with its own adapter mix, seed and
album time, as ``Comparer.sample_all`` lays them out) and what every row of one decode must share:
the prompt and the sampling knobs but the seed (``sampler.decode`` filters every row with one
temperature / top-k / top-p, one repetition penalty, one token budget and one precision). Calls
whose shared part differs wait for separate batches.

One worker thread per Comparer takes the oldest waiting request, waits up to ``window_s`` for
others (those that queued while the last batch ran are already there), gathers the waiting
requests with the same shared part up to ``max_rows`` rows, attaches their adapters under the
Comparer's lock and decodes them in one ``sample_sides``. Every row draws from its own generator
seeded with its own seed and keeps its own clock grid, so a caller gets the tokens its seed gives
alone (tests compare them). Rendering audio stays with each caller, after its decode.

Bounded: at most ``max_rows`` rows in a decode (a call bigger than that alone still runs, alone),
which is also the most rows ``studio.model.packed`` multiplies in its packed format: a bigger
batch would switch to the fp32 product and change the music. An error in one call (its adapter
is gone, its live view raises) fails that call only; a failed batch is retried call by call.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace

import torch

from studio.config import SamplingConfig
from studio.model import packed

log = logging.getLogger(__name__)
IDLE_EXIT_S = 30.0  # an idle worker ends (a dropped Comparer is then freed); the next call starts one


@dataclass(frozen=True)
class BatchConfig:
    """How the batcher gathers calls. One per Comparer, read from the environment by default."""

    window_s: float = field(default=0.05, metadata={
        "help": "seconds a call waits for others before its decode starts (env STUDIO_BATCH_WINDOW_MS)"})
    max_rows: int = field(default=packed.PACKED_MAX_ROWS, metadata={
        "help": "rows (sides × variations of every caller) in one decode; 0 = no batching, each call "
                "decodes alone (env STUDIO_BATCH_ROWS)"})

    def __post_init__(self):
        if not self.window_s >= 0:
            raise ValueError(f"batch window_s must be >= 0, got {self.window_s!r}")
        if not isinstance(self.max_rows, int) or not 0 <= self.max_rows <= packed.PACKED_MAX_ROWS:
            raise ValueError(f"batch max_rows must be an integer in 0..{packed.PACKED_MAX_ROWS} (above it the "
                             f"packed product gives way to fp32 and the music changes), got {self.max_rows!r}")

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0

    @classmethod
    def from_env(cls) -> "BatchConfig":
        try:
            window = float(os.environ.get("STUDIO_BATCH_WINDOW_MS", cls.window_s * 1000)) / 1000
            rows = int(os.environ.get("STUDIO_BATCH_ROWS", cls.max_rows))
        except ValueError as e:
            raise ValueError(f"STUDIO_BATCH_WINDOW_MS / STUDIO_BATCH_ROWS: not a number ({e})") from None
        return cls(window_s=window, max_rows=rows)


@dataclass(eq=False)
class Request:
    """One caller's rows and what they must share with the other rows of a decode."""

    rows: list  # per row: ``fast.row_mix`` (None: the base)
    seeds: list[int]
    albums: list  # per row: the album time its clock keeps (``beat.adapter_time``), None: the base's
    prompt: tuple[int, ...]
    sampling: SamplingConfig  # its seed is unused: each row has its own
    on_step: object = None  # the caller's per-token view of its own rows
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: list | None = None  # one Generation per row
    error: BaseException | None = None

    @property
    def key(self) -> tuple:
        """What rows decoded together must share: the prompt and every sampling knob but the seed."""
        return self.prompt, dataclasses.astuple(replace(self.sampling, seed=None))

    @property
    def names(self) -> set[str]:
        return {name for mix in self.rows for name, _ in mix or ()}

    def finish(self, result=None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


def same_products(prompt_len: int, alone: int, batched: int) -> bool:
    """Whether ``batched`` rows take the same product path as ``alone`` rows would, at the prompt
    (rows × prompt tokens at once) and at each new token: the packed format serves up to
    ``PACKED_MAX_ROWS`` rows, fp32 more (``studio.model.packed.matmul``)."""
    cap = packed.PACKED_MAX_ROWS
    return (alone * prompt_len <= cap) == (batched * prompt_len <= cap) and (alone <= cap) == (batched <= cap)


# Intra-op threads of every decode the studio serves, batched or not (the worker below; Comparer
# without batching), so a seed gives the same music either way: sums over one thread round
# otherwise than over two (13 of 60 seeds alike when the unbatched path kept two).
DECODE_THREADS = 1


class Batcher:
    """Gathers a Comparer's concurrent decodes into shared batches (see the module's docstring)."""

    def __init__(self, comparer, config: BatchConfig | None = None, max_adapters: int = 6):
        self.comparer = comparer
        self.max_adapters = max_adapters  # the Comparer keeps this many loaded: a batch needs no more
        self.config = config or BatchConfig.from_env()
        self.cond = threading.Condition()
        self.pending: list[Request] = []
        self.worker: threading.Thread | None = None
        self.worker_pid = 0
        self.batches: list[int] = []  # rows per decode so far (the tests' and the bench's view)

    def decode(self, request: Request) -> list:
        """Queue ``request``, wait for its batch; its Generations, one per row (or its error)."""
        with self.cond:
            self.pending.append(request)
            # a forked process (a ZeroGPU worker) inherits the attribute but not the thread
            if self.worker is None or self.worker_pid != os.getpid():
                self.worker = threading.Thread(target=self._loop, name="decode-batcher", daemon=True)
                self.worker_pid = os.getpid()
                self.worker.start()
            self.cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    # --- the worker -------------------------------------------------------------------------

    def _loop(self) -> None:
        # One intra-op thread here. Each thread that runs torch gets its own OpenMP team, and on a
        # 2-core box two teams (this worker's and the threads that loaded the model or decoded
        # before) spin against each other: one A/B pair of 256 tokens took 3.2 s instead of 0.9 s,
        # and every decode after it stayed that slow. With one thread it takes 1.15 s, and the
        # other threads keep their speed (2 cores, AMX Xeon).
        torch.set_num_threads(DECODE_THREADS)
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except BaseException as e:  # never leave a caller waiting
                log.exception("decode batch failed")
                for req in batch:
                    req.finish(error=e)

    def _next_batch(self) -> list[Request] | None:
        """The oldest request and every waiting one that can share its decode; None when idle long."""
        with self.cond:
            if not self.pending:
                self.cond.wait(IDLE_EXIT_S)
                if not self.pending:
                    self.worker = None  # under the lock: a new call starts a new worker
                    return None
            first = self.pending[0]
            deadline = first.arrived + self.config.window_s
            while (left := deadline - time.monotonic()) > 0 and self._fitting_rows(first) < self.config.max_rows:
                self.cond.wait(left)
            batch = self._gather(first)
            for req in batch:
                self.pending.remove(req)
            return batch

    def _fitting_rows(self, first: Request) -> int:
        return sum(len(r.rows) for r in self._gather(first))

    def _gather(self, first: Request) -> list[Request]:
        """Waiting requests that can join ``first``'s decode, oldest first: the same key, at most
        ``max_rows`` rows, at most ``max_adapters`` adapters (more would evict one another), and
        the same product path as each would take alone (``same_products``)."""
        batch, rows, names = [first], len(first.rows), first.names
        plen = len(first.prompt)
        for req in self.pending:
            if req is first or req.key != first.key:
                continue
            total, joined = rows + len(req.rows), names | req.names
            if total > self.config.max_rows or len(joined) > self.max_adapters:
                continue
            if not all(same_products(plen, len(r.rows), total) for r in (*batch, req)):
                continue
            batch.append(req)
            rows, names = total, joined
        return batch

    def _run(self, batch: list[Request]) -> None:
        """Attach each request's adapters, then decode the ones that could in one batch; a failed
        batch is decoded again request by request, so only the failing one gets its error."""
        c = self.comparer
        with c.lock:
            ready = []
            for req in batch:
                try:
                    for name in sorted(req.names):
                        c.ensure_adapter(name)
                    ready.append(req)
                except Exception as e:  # its adapter is gone or broken: this call only
                    req.finish(error=e)
            if not ready:
                return
            try:
                self._decode(ready)
            except Exception as e:
                if len(ready) == 1:
                    ready[0].finish(error=e)
                    return
                log.warning("a batch of %d calls failed (%s); decoding them one by one", len(ready), e)
                for req in ready:
                    try:
                        self._decode([req])
                    except Exception as one:
                        req.finish(error=one)

    def _decode(self, batch: list[Request]) -> None:
        from studio.model.generate import sample_sides

        c = self.comparer
        rows = [m for r in batch for m in r.rows]
        seeds = [s for r in batch for s in r.seeds]
        albums = [a for r in batch for a in r.albums]
        spans, start = [], 0
        for r in batch:
            spans.append((r, start, start + len(r.rows)))
            start += len(r.rows)
        gens = sample_sides(c.model, c.tok, list(batch[0].prompt), rows, batch[0].sampling, seeds,
                            on_step=_dispatch(spans) if any(r.on_step for r in batch) else None, albums=albums)
        self.batches.append(len(rows))
        if len(batch) > 1:  # the bench (bench/listeners.py) counts these lines in the app's log
            log.info("one decode for %d calls (%d rows)", len(batch), len(rows))
        for r, r0, r1 in spans:
            r.finish(gens[r0:r1], r.error)  # an error its live view raised stays its own


def _dispatch(spans: list[tuple[Request, int, int]]):
    """The decoder's ``on_step`` for a batch: each caller sees its own rows only. A caller's view
    that raises fails that caller (after the decode) and is not called again; asking to stop is
    not honoured, the batch is shared (every caller's rows are complete)."""

    def on_step(out: list[list[int]]) -> bool:
        for req, r0, r1 in spans:
            if req.on_step is not None and req.error is None:
                try:
                    req.on_step(out[r0:r1])
                except Exception as e:
                    req.error = e
        return False

    return on_step
