"""Many listeners at once (studio.service.batcher): calls that arrive together share one decode,
and each caller still gets exactly the tokens its seed gives alone; calls whose knobs differ wait
for separate batches; a batch never exceeds its rows; one failing call fails alone."""

from __future__ import annotations

import threading

import pytest

from studio.service.batcher import BatchConfig, Batcher, Request, same_products
from studio.service.compare import Comparer, Knobs
from test_compare import make_adapter


@pytest.fixture()
def adapters(tok, tiny_base_dir):
    make_adapter(tok, tiny_base_dir, "alpha", 1)
    make_adapter(tok, tiny_base_dir, "beta", 2)
    return ["alpha", "beta"]


def comparer(base, **batch) -> Comparer:
    c = Comparer(str(base))
    c.batcher = Batcher(c, BatchConfig(**batch))
    c.load()
    return c


def at_once(fns, timeout: float = 120) -> list:
    """Every fn in its own thread, released together; results or exceptions, in order."""
    gate, out = threading.Barrier(len(fns)), [None] * len(fns)

    def run(i, fn):
        gate.wait()
        try:
            out[i] = fn()
        except Exception as e:
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a caller never returned"
    return out


def ids(gens) -> list:
    """Token ids per side (and variation), whatever the nesting."""
    return [ids(g) if isinstance(g, list) else g.ids for g in gens]


def flat(sides) -> list:
    """Every row's ids of one call: sides, and their variations when there are several."""
    return [r for side in sides for r in (side if isinstance(side[0], list) else [side])]


# (sides, seed, variations, knobs): different seeds, adapters, strengths, blends and variations,
# one shared prompt and knobs, so all of them can share a decode
CALLS = [([None, "alpha"], 5, 1), (["beta"], 9, 2), ([(("alpha", 0.5),), None], 11, 1),
         ([(("alpha", 0.7), ("beta", 0.3))], 3, 1), (["alpha", "beta"], 5, 1)]


def test_a_call_batched_with_others_gets_the_tokens_it_gets_alone(tok, tiny_base_dir, adapters):
    knobs, bos = Knobs(max_new_tokens=40, min_new_tokens=20), [tok["BOS_None"]]
    alone = comparer(tiny_base_dir, max_rows=0)  # no batcher: each call decodes by itself
    expected = [ids(alone.sample_all(sides, bos, knobs, seed, v)) for sides, seed, v in CALLS]
    rows = sum(len(s) * v for s, _, v in CALLS)
    # a batch exactly their size starts once all have arrived; the long window is a safety margin only
    shared = comparer(tiny_base_dir, window_s=5.0, max_rows=rows)
    got = at_once([lambda c=c: ids(shared.sample_all(c[0], bos, knobs, c[1], c[2])) for c in CALLS])
    assert got == expected
    assert shared.batcher.batches == [rows]  # one decode for all five calls
    assert len({tuple(r) for one in expected for r in flat(one)}) == rows - 1  # different music (one repeat: alpha, seed 5)


def test_calls_with_different_knobs_are_decoded_in_separate_batches(tok, tiny_base_dir, adapters):
    bos = [tok["BOS_None"]]
    warm, cool = Knobs(max_new_tokens=32, temperature=1.2), Knobs(max_new_tokens=32, temperature=0.8)
    short = Knobs(max_new_tokens=24, temperature=1.2)  # another token budget
    calls = [(warm, 1), (cool, 2), (warm, 3), (short, 4), (cool, 5)]
    alone = comparer(tiny_base_dir, max_rows=0)
    expected = [ids(alone.sample_all([None, "alpha"], bos, k, s)) for k, s in calls]
    shared = comparer(tiny_base_dir, window_s=1.0, max_rows=16)
    got = at_once([lambda k=k, s=s: ids(shared.sample_all([None, "alpha"], bos, k, s)) for k, s in calls])
    assert got == expected
    assert sorted(shared.batcher.batches) == [2, 4, 4]  # warm ×2, cool ×2, short alone


def test_a_batch_never_holds_more_than_max_rows(tok, tiny_base_dir, adapters):
    bos, knobs = [tok["BOS_None"]], Knobs(max_new_tokens=16)
    shared = comparer(tiny_base_dir, window_s=1.0, max_rows=4)
    calls = [([None, "alpha"], s, 1) for s in range(5)] + [(["alpha", "beta", None], 7, 2)]  # 6 rows alone
    got = at_once([lambda c=c: shared.sample_all(c[0], bos, knobs, c[1], c[2]) for c in calls])
    assert not [g for g in got if isinstance(g, Exception)], got
    assert sum(shared.batcher.batches) == 5 * 2 + 6
    assert 6 in shared.batcher.batches  # bigger than a batch: it runs, alone
    assert all(n <= 4 for n in shared.batcher.batches if n != 6)
    assert max(n for n in shared.batcher.batches if n != 6) == 4  # and the pairs did share


def test_one_failing_call_does_not_fail_the_others(tok, tiny_base_dir, adapters):
    bos, knobs = [tok["BOS_None"]], Knobs(max_new_tokens=24)
    alone = comparer(tiny_base_dir, max_rows=0)
    expected = ids(alone.sample_all([None, "alpha"], bos, knobs, 8))
    shared = comparer(tiny_base_dir, window_s=5.0, max_rows=8)  # the five calls' rows: starts once all are in

    def broken_view(rows):
        raise RuntimeError("the live view broke")

    def request(rows, seeds, albums, on_step=None):
        return Request(rows, seeds, albums, tuple(bos), knobs.sampling(), on_step)

    fns = [lambda: ids(shared.sample_all([None, "alpha"], bos, knobs, 8)),
           lambda: shared.sample_all([None, "alpha"], bos, knobs, 8, on_step=broken_view),
           # an adapter that is not in the library: refused when the worker attaches it
           lambda: shared.batcher.decode(request([(("ghost", 1.0),)], [1], [None])),
           # a row whose clock cannot be built fails the shared decode: retried one by one
           lambda: shared.batcher.decode(request([None], [2], [{"grid": [0], "chord": "many"}])),
           lambda: ids(shared.sample_all([None, "alpha"], bos, knobs, 8))]
    got = at_once(fns)
    assert got[0] == got[4] == expected
    assert isinstance(got[1], RuntimeError) and "live view" in str(got[1])
    assert isinstance(got[2], FileNotFoundError | ValueError) and "ghost" in str(got[2])
    assert isinstance(got[3], Exception) and not isinstance(got[3], RuntimeError)
    # the first decode (4 good rows + the bad clock) failed, then each call alone
    assert shared.batcher.batches[:3] == [2, 2, 2]


def test_the_live_view_sees_only_its_own_rows(tok, tiny_base_dir, adapters):
    bos, knobs = [tok["BOS_None"]], Knobs(max_new_tokens=24)
    shared = comparer(tiny_base_dir, window_s=5.0, max_rows=6)  # both calls' rows: starts once both are in
    seen: dict[int, list] = {}

    def view(k):
        def on_step(rows):
            seen[k] = [list(r) for r in rows]
        return on_step

    got = at_once([lambda k=k: ids(shared.sample_all([None, "alpha"], bos, knobs, 20 + k, 1 + k, on_step=view(k)))
                   for k in range(2)])
    assert shared.batcher.batches == [2 + 4]
    for k, sides in enumerate(got):
        assert seen[k] == flat(sides)  # the last view: exactly this call's rows, complete


def test_batch_config_and_product_paths(monkeypatch):
    assert same_products(1, 2, 16) and not same_products(1, 2, 17)  # a new token: packed up to 16 rows
    assert not same_products(4, 2, 8)  # a 4-token prompt: 8 rows packed alone, 32 rows in fp32
    assert same_products(20, 2, 16)  # a long prompt: fp32 both ways
    with pytest.raises(ValueError, match="max_rows"):
        BatchConfig(max_rows=17)
    with pytest.raises(ValueError, match="window_s"):
        BatchConfig(window_s=-1)
    monkeypatch.setenv("STUDIO_BATCH_ROWS", "0")
    monkeypatch.setenv("STUDIO_BATCH_WINDOW_MS", "20")
    assert BatchConfig.from_env() == BatchConfig(window_s=0.02, max_rows=0) and not BatchConfig.from_env().enabled
    monkeypatch.setenv("STUDIO_BATCH_ROWS", "many")
    with pytest.raises(ValueError, match="STUDIO_BATCH_ROWS"):
        BatchConfig.from_env()


@pytest.mark.app
def test_concurrent_api_calls_each_get_the_music_of_the_call_alone(tmp_path):
    """Through the live app: /compare calls fired at once by separate gradio clients share decodes
    and each returns the MIDI that the same call returns alone."""
    import re

    from gradio_client import Client

    from test_space import REPO, app_env, running_app

    # (seed, max new tokens, temperature, strengths, variations): three can share, one cannot
    calls = [(1, 32, 1.0, [1.0, 1.0], 1), (2, 32, 1.0, [1.0, 0.5], 2), (3, 32, 1.0, None, 1), (4, 32, 0.9, None, 1)]
    env = app_env(tmp_path / "data", STUDIO_BASE="pocket", STUDIO_BATCH_WINDOW_MS=300)

    def compare(client, seed, tokens, temperature, strengths, variations):
        out = client.predict(["base alone", "bach-chorales"], seed, tokens, tokens, temperature, 0.95, 50,
                             strengths, variations, "as in the file", api_name="/compare")
        return [(r["label"], r["variation"], r["midi_base64"]) for r in out]

    log = tmp_path / "app.log"
    with running_app(REPO, env, log, timeout=180) as url:
        alone = [compare(Client(url, verbose=False), *c) for c in calls]
        clients = [Client(url, verbose=False) for _ in calls]
        together = at_once([lambda k=k: compare(clients[k], *calls[k]) for k in range(len(calls))], timeout=300)
    assert together == alone
    assert all(m for one in alone for _, _, m in one)  # every side has notes (else equal Nones prove nothing)
    shared = [int(n) for n in re.findall(r"one decode for (\d+) calls", log.read_text())]
    assert shared and max(shared) >= 2, log.read_text()[-3000:]
