"""``/infill``: a passage of a MIDI file regenerated over the named API, against the live app (python app.py)."""

from __future__ import annotations

import base64
import os

import pytest
from symusic import Score

from conftest import make_piece
from test_api import AUDIO, app_url  # noqa: F401 (app_url: the same live app fixture)
from test_space import REPO, running_app

pytestmark = pytest.mark.app


def test_infill_endpoint_returns_ranked_candidates_in_place(app_url):
    from gradio_client import Client

    piece = make_piece(5, n_notes=64)
    client = Client(app_url, verbose=False)
    res = client.predict(base64.b64encode(piece.dumps_midi()).decode(), 2, 3, "bars", 3, "bach-chorales", 11,
                         api_name="/infill")
    cands = res["candidates"]
    assert [c["rank"] for c in cands] == [1, 2, 3] and sorted(c["seed"] for c in cands) == [11, 12, 13]
    lls = [c["log_likelihood"] for c in cands]
    assert lls == sorted(lls, reverse=True) and res["after_tokens"] > 0 and res["original_log_likelihood"] < 0
    for c in cands:
        out = Score.from_midi(base64.b64decode(c["midi_base64"]))
        s, e = 2 * 4 * out.tpq, 3 * 4 * out.tpq
        kept = sorted((n.time, n.pitch) for tr in out.tracks if tr.name != "infill" for n in tr.notes)
        assert kept == sorted((round(n.time * out.tpq / piece.tpq), n.pitch) for tr in piece.tracks
                              for n in tr.notes if not s <= round(n.time * out.tpq / piece.tpq) < e)
        if AUDIO:
            assert base64.b64decode(c["ogg_base64"])[:4] == b"OggS"
    with pytest.raises(Exception, match="outside the piece"):
        client.predict(base64.b64encode(piece.dumps_midi()).decode(), 90, 91, api_name="/infill")
    with pytest.raises(Exception, match="not base64|bytes"):
        client.predict("%%%", 1, 2, api_name="/infill")


def test_public_mode_caps_the_candidates(tmp_path):
    from gradio_client import Client

    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "STUDIO_BASE": "pocket",
           "STUDIO_PUBLIC": "1", "STUDIO_MAX_GENERATE_TOKENS": "600"}
    with running_app(REPO, env, tmp_path / "app.log", timeout=180) as url:
        client = Client(url, verbose=False)
        midi = base64.b64encode(make_piece(5, n_notes=32).dumps_midi()).decode()
        with pytest.raises(Exception, match="at most 600 tokens"):
            client.predict(midi, 1, 2, "bars", 4, api_name="/infill")
