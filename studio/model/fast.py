"""A lean GPT-2 decoder for listening and A/B: merged LoRA, its own KV cache, batched sides.

Decoding a small GPT-2 one token at a time on a CPU is bound by per-call overhead, not by
arithmetic: each new token is a (1, n_embd) row through a few (n_embd, k) matrices. Profiled
here (4 layers, 256 wide, one thread), Hugging Face's forward spends ~40 % of each step in
``torch.cat`` growing its DynamicCache (O(T) copies per token, O(T²) per piece), and
``cache_implementation="static"`` is no faster (it attends over the whole 1024-slot cache
every step). So this module:

* ``merged(model)``: folds the active LoRA adapter into the base weights for the duration
  (peft's ``merge_adapter``/``unmerge_adapter``, in place, no model copy). Unmerged, an
  adapter adds ~5 small ops (dropout, A, B, scale, add) to each of 4 layers per block.
* ``FastGPT2``: an inference-only view over the same module weights (no copy) with a
  preallocated KV cache that is written in place and read as a growing slice: ~15 ops per
  block, no cache copies, no mask building. Logits match the Hugging Face forward (tests).
  It also runs *different adapters per row*: the base product for every row, then each
  unmerged adapter's low-rank update on its rows only (no weight copies), so an A/B pair's
  sides go through the model together, one pass per token for both.

The sampling loop over it is ``studio.model.sampler.decode``. The studio samples through
here (``studio.model.generate.sample`` and ``sample_sides``) for every GPT-2 base, without
merging: merging and unmerging in place would let float rounding drift the shared base
weights over a long-running app (the CLI, which owns its model, merges once with peft's
``merge_and_unload``).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from studio.model import packed

BASE_ROW = "__base__"  # a row with no adapter (peft's own name for it in mixed batches)
_ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}


@contextlib.contextmanager
def merged(model):
    """``model`` with its active LoRA adapter merged into the base weights, unmerged on exit.

    A plain (non-peft) model is yielded as is. Merging changes weights in place: callers that
    share the model between threads hold their lock meanwhile (the Comparer does).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        yield model
        return
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()


@contextlib.contextmanager
def intra_op_threads(n: int):
    """Run with ``n`` intra-op threads (0: leave torch's setting), then restore. When other
    processes load a small CPU box's cores, spinning worker threads make every small op wait
    for a core, so one thread can be the faster choice there."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n) if int(n) > 0 else old)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- the lean GPT-2 decoder


def _weight(mod) -> torch.Tensor:
    """A Conv1D's (in, out) weight, through a peft LoRA wrapper if there is one."""
    return getattr(mod, "base_layer", mod).weight


def _bias(mod):
    return getattr(mod, "base_layer", mod).bias


class FastGPT2:
    """Inference over a Hugging Face GPT-2 (plain or wrapped by peft) with its own KV cache.

    Reads the module weights at each call, so merging or switching adapters is seen at once.
    """

    def __init__(self, model, precision: str = "fp32"):
        from peft import PeftModel

        self.peft = model if isinstance(model, PeftModel) else None
        lm = model.get_base_model() if self.peft is not None else model
        cfg = lm.config
        why = unsupported(cfg)
        if why:
            raise ValueError(f"FastGPT2: {why}")
        self.tr, self.cfg = lm.transformer, cfg
        # the base's products in fp32, bf16 or int8 (studio.model.packed); LoRA rows stay fp32
        self.fmt = packed.resolve(precision, self.tr.wte.weight.device)
        self.n_head, self.eps = cfg.n_head, cfg.layer_norm_epsilon
        self.approx = _ACTIVATIONS[cfg.activation_function]
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0
        self.pad: torch.Tensor | None = None  # per row, left-padding slots it never attends to (``refill``)
        self.visible: torch.Tensor | None = None  # (B, capacity): the slots past each row's padding
        self.rows: list[str | None] = []
        self.spans: list[tuple[str, int, int]] = []
        self.deltas: dict[int, list[tuple[int, int, torch.Tensor, torch.Tensor]]] = {}

    def start(self, n_rows: int, capacity: int, rows: list) -> None:
        """Empty cache for ``n_rows`` rows of up to ``capacity`` tokens; ``rows``: per row, what
        it runs (``row_mix``): None for the base, an adapter name, or ((name, weight), ...)."""
        p = self.tr.wte.weight
        head_dim = self.cfg.n_embd // self.n_head
        shape = (n_rows, self.n_head, capacity, head_dim)  # (B, H, T, D)
        self.keys = [torch.empty(shape, dtype=p.dtype, device=p.device) for _ in self.tr.h]
        self.values = [torch.empty(shape, dtype=p.dtype, device=p.device) for _ in self.tr.h]
        self.length = 0
        self.pad = None
        self.rows = self._check_rows(rows)
        # rows that share an adapter are neighbours in an A/B batch: (name, first row, end row)
        self.spans = [(name, r0, r1) for name, r0, r1 in _spans(self.rows) if name is not None]
        self.deltas = self._plan_deltas()

    def refill(self, contexts: list[list[int]]) -> torch.Tensor:
        """Empty the cache and feed each row its own context (``studio.model.slide``: a long piece
        keeps its recent past); returns each row's last logits (B, vocab). Rows of other lengths
        are left-padded to the longest: a row sees neither its padding nor its positions (its
        tokens sit at positions 0.. as when it runs alone), so it draws what it would alone."""
        longest = max(len(c) for c in contexts)
        device = self.tr.wte.weight.device
        ids = torch.tensor([[0] * (longest - len(c)) + list(c) for c in contexts], dtype=torch.long, device=device)
        self.length = 0
        pad = torch.tensor([longest - len(c) for c in contexts], device=device)
        self.pad = pad if bool(pad.any()) else None  # no padding: the plain (unmasked) path
        if self.pad is not None:  # which cache slots each row attends to, sliced per step (no work there)
            self.visible = torch.arange(self.keys[0].shape[2], device=device).unsqueeze(0) >= pad.unsqueeze(1)
        return self.step(ids)

    def _positions_and_mask(self, t0: int, t1: int):
        """(positions (B, T) or a range, attention mask (B, 1, T, t1) or None) for new slots t0..t1."""
        if self.pad is None:
            return slice(t0, t1), None
        slots = torch.arange(t1, device=self.pad.device)
        pos = (slots[t0:].unsqueeze(0) - self.pad.unsqueeze(1)).clamp(min=0)  # (B, T)
        causal = slots.unsqueeze(0) <= slots[t0:].unsqueeze(1)  # (T, t1)
        # a padding slot attends to itself alone (no row of all -inf, no NaN); nothing reads it
        own = slots.unsqueeze(0) == slots[t0:].unsqueeze(1)
        mask = (causal.unsqueeze(0) & self.visible[:, None, :t1]) | own.unsqueeze(0)
        return pos, mask.unsqueeze(1)

    def _plan_deltas(self) -> dict:
        """Per LoRA-wrapped module: [(first row, end row, Aᵀ, weight·scale·Bᵀ)] for the rows' mixes.

        Gathered once per decode, as small contiguous copies (rank × width), so each step does
        two plain products per module and adapter instead of peft's lookups, transposes and
        scaling. A strength or blend weight only scales Bᵀ: the base weights never change.
        """
        plan = {}
        for block in self.tr.h if self.spans else ():
            for mod in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                entries = [(r0, r1, mod.lora_A[name].weight.t().contiguous(),
                            (mod.lora_B[name].weight.t() * (mod.scaling[name] * weight)).contiguous())
                           for mix, r0, r1 in self.spans for name, weight in mix
                           if name in getattr(mod, "lora_A", {}) and weight != 0]
                if entries:
                    plan[id(mod)] = entries
        return plan

    def _check_rows(self, rows: list) -> list:
        """Each row's adapters must be loaded, and merged weights must be what every row wants."""
        rows = [row_mix(r) for r in rows]
        if self.peft is None:
            if any(rows):
                raise ValueError("rows ask for adapters but the model has none")
            return rows
        for mix in rows:
            for name, _ in mix or ():
                if name not in self.peft.peft_config:
                    raise ValueError(f"adapter {name!r} is not loaded on this model")
        merged_now = {a for m in self._lora_modules() for a in m.merged_adapters}
        if merged_now:
            if any(mix != ((a, 1.0),) for mix in rows for a in merged_now) or len(merged_now) > 1:
                raise ValueError(f"adapter(s) {sorted(merged_now)} are merged: every row must use them "
                                 "(unmerge to mix sides)")
            return [None] * len(rows)  # already in the weights: no deltas to add
        return rows

    def _lora_modules(self):
        return [m for m in self.peft.modules() if hasattr(m, "lora_A") and hasattr(m, "merged_adapters")]

    def _linear(self, mod, x: torch.Tensor) -> torch.Tensor:
        """x @ W + b for (B, T, in) x, plus each row's own unmerged LoRA update."""
        b, t, n_in = x.shape
        return self._product(mod, x.reshape(b * t, n_in), t).view(b, t, -1)

    def _product(self, mod, flat: torch.Tensor, t: int) -> torch.Tensor:
        """(B·T, in) -> (B·T, out): the base product for every row, then each adapter's low-rank
        update on its own rows, in place (out[rows] += (x[rows] @ Aᵀ) @ scale·Bᵀ): no weight
        copies, two small products."""
        out = packed.matmul(flat, _weight(mod), self.fmt, bias=_bias(mod))
        for r0, r1, a_t, b_t in self.deltas.get(id(mod), ()):
            if (r1 - r0) * t == flat.shape[0]:  # every row has this adapter: no slicing
                out.addmm_(flat @ a_t, b_t)
            else:
                out[r0 * t:r1 * t].addmm_(flat[r0 * t:r1 * t] @ a_t, b_t)
        return out

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed (B, T) new tokens; returns the last position's logits (B, vocab)."""
        n, t0 = ids.shape[1], self.length
        t1 = t0 + n
        if t1 > self.keys[0].shape[2]:
            raise ValueError(f"cache full: {t1} tokens > capacity {self.keys[0].shape[2]}")
        if n == 1:
            return self._step_one(ids[:, 0])
        tr = self.tr
        pos, mask = self._positions_and_mask(t0, t1)
        h = F.embedding(ids, tr.wte.weight) + tr.wpe.weight[pos]  # (B, T, E)
        head_dim = self.cfg.n_embd // self.n_head
        for i, block in enumerate(tr.h):
            a = F.layer_norm(h, (h.shape[-1],), block.ln_1.weight, block.ln_1.bias, self.eps)
            q, k, v = self._linear(block.attn.c_attn, a).split(self.cfg.n_embd, dim=2)
            q = q.view(q.shape[0], n, self.n_head, head_dim).transpose(1, 2)  # (B, H, T, D)
            self.keys[i][:, :, t0:t1] = k.view(k.shape[0], n, self.n_head, head_dim).transpose(1, 2)
            self.values[i][:, :, t0:t1] = v.view(v.shape[0], n, self.n_head, head_dim).transpose(1, 2)
            # a prompt starts at 0, so its causal mask is the plain lower triangle (rows refilled
            # with padding: that and no padding slot, ``_positions_and_mask``); one new token
            # attends to everything before it
            o = F.scaled_dot_product_attention(q, self.keys[i][:, :, :t1], self.values[i][:, :, :t1],
                                               attn_mask=mask, is_causal=mask is None and n > 1,
                                               scale=1.0 / math.sqrt(head_dim))
            o = o.transpose(1, 2).reshape(h.shape)
            h = h + self._linear(block.attn.c_proj, o)
            m = F.layer_norm(h, (h.shape[-1],), block.ln_2.weight, block.ln_2.bias, self.eps)
            m = F.gelu(self._linear(block.mlp.c_fc, m), approximate=self.approx)
            h = h + self._linear(block.mlp.c_proj, m)
        last = F.layer_norm(h[:, -1], (h.shape[-1],), tr.ln_f.weight, tr.ln_f.bias, self.eps)
        self.length = t1
        return packed.matmul(last, tr.wte.weight, self.fmt, in_out=False)  # tied LM head: (B, vocab)

    def _step_one(self, ids: torch.Tensor) -> torch.Tensor:
        """``step`` for one new token per row, on (B, E) rows: one token's (H, 1, D) heads are a
        plain view of its (E,) row, so no transposes or reshapes; ~20 ops per block instead of
        ~30, which is most of the step's time outside the products on a CPU."""
        tr, t0 = self.tr, self.length
        b, e, n_head = ids.shape[0], self.cfg.n_embd, self.n_head
        head_dim = e // n_head
        # after a refill with padding: each row's own position, and no padding slot attended
        pos, mask = (t0, None) if self.pad is None else (t0 - self.pad, self.visible[:, None, None, :t0 + 1])
        h = F.embedding(ids, tr.wte.weight) + tr.wpe.weight[pos]  # (B, E)
        for i, block in enumerate(tr.h):
            a = F.layer_norm(h, (e,), block.ln_1.weight, block.ln_1.bias, self.eps)
            qkv = self._product(block.attn.c_attn, a, 1).view(b, 3, n_head, 1, head_dim)
            self.keys[i][:, :, t0:t0 + 1] = qkv[:, 1]
            self.values[i][:, :, t0:t0 + 1] = qkv[:, 2]
            o = F.scaled_dot_product_attention(qkv[:, 0], self.keys[i][:, :, :t0 + 1], self.values[i][:, :, :t0 + 1],
                                               attn_mask=mask, scale=1.0 / math.sqrt(head_dim))
            h = h + self._product(block.attn.c_proj, o.reshape(b, e), 1)
            m = F.layer_norm(h, (e,), block.ln_2.weight, block.ln_2.bias, self.eps)
            m = F.gelu(self._product(block.mlp.c_fc, m, 1), approximate=self.approx)
            h = h + self._product(block.mlp.c_proj, m, 1)
        last = F.layer_norm(h, (e,), tr.ln_f.weight, tr.ln_f.bias, self.eps)
        self.length = t0 + 1
        return packed.matmul(last, tr.wte.weight, self.fmt, in_out=False)


def row_mix(spec) -> tuple[tuple[str, float], ...] | None:
    """What one row runs, normalised: None (the base alone) or ((adapter, weight), ...).

    ``spec``: None or BASE_ROW (base), a name (weight 1: the adapter as trained), or pairs
    (name, weight): one pair at another strength (0.5 = half the low-rank update, 2 = double),
    several for a blend (0.7 A + 0.3 B). Weights of 0 are dropped; nothing left is the base.
    """
    if spec is None or spec == BASE_ROW:
        return None
    if isinstance(spec, str):
        return ((spec, 1.0),)
    pairs = tuple((str(n), float(w)) for n, w in spec if float(w) != 0.0)
    return pairs or None


def _spans(rows: list) -> list[tuple]:
    """[(value, start, end)] runs of equal neighbours: ['a', 'a', None] -> [('a', 0, 2), (None, 2, 3)]."""
    out = []
    for i, r in enumerate(rows):
        if out and out[-1][0] == r:
            out[-1] = (r, out[-1][1], i + 1)
        else:
            out.append((r, i, i + 1))
    return out


def supports(model) -> bool:
    """Whether FastGPT2 can run ``model`` (plain or peft-wrapped) exactly as its own forward."""
    from peft import PeftModel

    lm = model.get_base_model() if isinstance(model, PeftModel) else model
    return hasattr(lm, "transformer") and not unsupported(lm.config)


def unsupported(cfg) -> str:
    """Why FastGPT2 can't reproduce this config's forward ('' when it can)."""
    if getattr(cfg, "model_type", "") != "gpt2":
        return f"model type {getattr(cfg, 'model_type', '?')!r} is not gpt2"
    if cfg.activation_function not in _ACTIVATIONS:
        return f"activation {cfg.activation_function!r} is not supported"
    if not cfg.scale_attn_weights or cfg.scale_attn_by_inverse_layer_idx or cfg.reorder_and_upcast_attn:
        return "non-default attention scaling"
    if not getattr(cfg, "tie_word_embeddings", True):
        return "untied LM head"
    return ""
