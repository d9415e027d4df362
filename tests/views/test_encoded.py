"""What 01_encode shows: a stereo song's waveform per channel, stereo players, and its mid and
side tiles each on its own codec's scale; a mono song as before."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.views.test_batch_report import _duet
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.errors import WavdiffError
from wavdiff_utils.io.audio import load_audio
from wavdiff_utils.jobs.encode import encode_batch
from wavdiff_utils.views.encoded import plot_mid_side, show_encoded


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoded")
    _duet(root / "duet.wav")         # left loud (beyond full scale), right delayed and quieter
    return {ch: encode_batch(root / "duet.wav", root / ch, progress=False,
                             params=CodecParams(size=128, channels=ch)) for ch in ("mono", "stereo")}


def _shown(result, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    before = len(plt.get_fignums())
    show_encoded(result, max_players=2)
    titles = [ax.get_title() for n in plt.get_fignums()[before:] for ax in plt.figure(n).axes]
    plt.close("all")
    players = [o.data for o in shown if "data:audio/mpeg" in (getattr(o, "data", "") or "")]
    return titles, players


def _channels(player_html: str) -> int:
    import base64
    import io

    b64 = player_html.split("data:audio/mpeg;base64,", 1)[1].split('"', 1)[0]
    return sf.info(io.BytesIO(base64.b64decode(b64))).channels


def test_a_stereo_song_shows_left_and_right_and_plays_in_stereo(encoded, monkeypatch):
    titles, players = _shown(encoded["stereo"], monkeypatch)
    waves = [t for t in titles if t.startswith("duet:")]
    assert [t.split(", ")[2] for t in waves] == ["left", "right"]
    y = load_audio(Path(encoded["stereo"].results[0].output).parents[1] / "duet.wav",
                   sample_rate=44100, mono=False)
    peaks = np.abs(y).max(axis=0)
    assert peaks[0] > 1 and peaks[1] < peaks[0] * 0.7
    for title, peak in zip(waves, peaks):                                # each its own channel
        assert title.endswith(f"peak {peak:.2f}")
    assert len(players) == 2 and {_channels(p) for p in players} == {2}


def test_a_mono_song_shows_one_waveform_and_mono_players(encoded, monkeypatch):
    titles, players = _shown(encoded["mono"], monkeypatch)
    waves = [t for t in titles if t.startswith("duet:")]
    assert len(waves) == 1 and "left" not in waves[0]
    assert len(players) == 2 and {_channels(p) for p in players} == {1}


def test_mid_and_side_are_drawn_each_on_its_own_scale(encoded):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    params = CodecParams(size=128)
    fig = plot_mid_side(encoded["stereo"].results[0].output, 1)
    mid, side = (ax.images[0] for ax in fig.axes[:2])
    assert mid.get_clim() == (params.db_min, params.db_max)
    assert side.get_clim() == (params.side_codec().db_min, params.db_max)
    assert "side (L-R)/2" in fig.axes[1].get_title() and len(fig.axes) == 4    # 2 colorbars
    plt.close("all")


@pytest.mark.parametrize("which, index, words", [("mono", None, "a mono song has no side tiles"),
                                                 ("stereo", 99, "tile index 99 is out of range")])
def test_mid_side_refuses_in_one_line(encoded, which, index, words):
    with pytest.raises(WavdiffError, match=words) as info:
        plot_mid_side(encoded[which].results[0].output, index)
    assert "\n" not in str(info.value)
