"""The scriptable endpoints, called with gradio_client against the live app (python app.py)."""

from __future__ import annotations

import base64
import io
import os

import pytest
from symusic import Score

from conftest import make_piece
from test_space import REPO, running_app

pytestmark = pytest.mark.app

AUDIO = __import__("studio.audio.render", fromlist=["fluidsynth_status"]).fluidsynth_status()[0]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    data = tmp_path_factory.mktemp("api-data")
    env = {**os.environ, "STUDIO_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "STUDIO_BASE": "pocket"}
    with running_app(REPO, env, data / "app.log", timeout=180) as url:
        yield url


def test_compare_endpoint_returns_each_side_with_its_midi_and_texture(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict(["base alone", "bach-chorales"], 7, 64, 64, 1.0, 0.95, 50, [1.0, 0.5], 2, "Choir",
                         api_name="/compare")
    assert [(r["label"], r["variation"], r["seed"]) for r in out] == [
        ("base", 1, 7), ("base", 2, 8), ("bach-chorales ×0.5", 1, 7), ("bach-chorales ×0.5", 2, 8)]
    for r in out:
        midi = Score.from_midi(base64.b64decode(r["midi_base64"])) if r["midi_base64"] else None
        assert r["new_tokens"] == 64 and (midi is None or midi.note_num() == r["notes"])
        assert r["texture"]["notes"] == r["notes"] and "artist_texture" in r
        if AUDIO and midi is not None:
            assert base64.b64decode(r["ogg_base64"])[:4] == b"OggS"


def test_continue_endpoint_and_the_comparison_file(app_url):
    """/compare's comparison_midi_base64 (every side as a named track), then /continue extends
    side B's piece from its end: the same notes first, more after, the seed rule seed + 1000·n."""
    from collections import Counter

    from gradio_client import Client

    client = Client(app_url, verbose=False)
    out = client.predict(["base alone", "bach-chorales"], 11, 48, 48, 1.0, 0.95, 50, None, 1, "as in the file",
                         api_name="/compare")
    both = Score.from_midi(base64.b64decode(out[0]["comparison_midi_base64"]))
    assert [t.name for t in both.tracks] == ["A: base", "B: bach-chorales"]
    assert out[1]["comparison_midi_base64"] == out[0]["comparison_midi_base64"]
    piece = out[1]["midi_base64"]
    res = client.predict("bach-chorales", piece, 1.0, 11, 1, 48, 48, 1.0, 0.95, 50, "as in the file",
                         api_name="/continue")
    assert res["label"] == "bach-chorales" and res["seed"] == 1011 and res["continuation"] == 1
    assert res["new_tokens"] == 48 and "artist_texture" in res
    before, after = (Score.from_midi(base64.b64decode(b)) for b in (piece, res["midi_base64"]))
    onsets = [Counter((n.time, n.pitch, n.velocity) for t in s.tracks for n in t.notes) for s in (before, after)]
    assert not onsets[0] - onsets[1] and after.note_num() > before.note_num()
    if AUDIO:
        assert base64.b64decode(res["ogg_base64"])[:4] == b"OggS"
    with pytest.raises(Exception, match="not base64|bytes"):
        client.predict("bach-chorales", "%%%", api_name="/continue")


@pytest.mark.skipif(not AUDIO, reason="FluidSynth library not installed")
def test_render_endpoint_renders_a_midi_file_with_the_instrument_asked(app_url):
    import soundfile as sf
    from gradio_client import Client

    buf = make_piece(3, n_notes=16).dumps_midi()
    client = Client(app_url, verbose=False)
    res = client.predict(base64.b64encode(buf).decode(), "Violin", api_name="/render")
    audio, rate = sf.read(io.BytesIO(base64.b64decode(res["ogg_base64"])))
    assert rate == 44100 and abs(len(audio) / rate - res["seconds"]) < 0.1 and res["peak"] > 0.01
    with pytest.raises(Exception, match="not base64|bytes"):
        client.predict("%%%", "Violin", api_name="/render")


def test_public_mode_limits_apply_to_the_api(tmp_path):
    from gradio_client import Client

    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "STUDIO_PUBLIC": "1",
           "STUDIO_BASE": "pocket"}
    with running_app(REPO, env, tmp_path / "app.log", timeout=180) as url:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="at most 3072 tokens per Generate"):
            client.predict(["base alone", "bach-chorales"], 1, 1023, 0, 1.0, 0.95, 50, None, 2, "Piano",
                           api_name="/compare")
        piece = base64.b64encode(make_piece(1, n_notes=8).dumps_midi()).decode()
        with pytest.raises(Exception, match="at most 3072 tokens per Generate"):
            client.predict("bach-chorales", piece, 1.0, 1, 1, 4000, api_name="/continue")
        with pytest.raises(Exception, match="bytes"):  # MAX_API_MIDI_BYTES
            client.predict("bach-chorales", base64.b64encode(b"MThd" + bytes(3 * 2**20)).decode(), api_name="/continue")
