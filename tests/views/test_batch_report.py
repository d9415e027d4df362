"""The batch report: every song's warnings in the words the terminal printed; stereo songs play in stereo."""
import json

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like
from wavdiff_utils.errors import WavdiffError
from wavdiff_utils.jobs.pipeline import run_pipeline
from wavdiff_utils.results import SUMMARY_NAME
from wavdiff_utils.views.batch_report import batch_overview


def test_song_warnings_reach_the_report(tmp_path):
    y = music_like(3.0, 44100)
    loud = y / np.abs(y).max() * 1.6                   # decoded MP3s beyond +-1 are common
    sf.write(tmp_path / "loud.wav", loud.astype(np.float32), 44100, subtype="FLOAT")
    res = run_pipeline(tmp_path / "loud.wav", tmp_path / "out", captioner="none", size=128,
                       report=False, progress=False, workers=1, log=None)
    printed = [line.split("warning:", 1)[1].strip() for line in res.summary().splitlines()
               if "warning:" in line]
    assert printed, res.summary()
    text, _, batch = batch_overview(tmp_path / "out")
    record = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert batch == record
    for w in record["songs"][0]["warnings"]:
        assert w in text
    for line in printed:                               # the same words as the terminal
        assert line.split(": ", 1)[-1] in text


def test_a_short_clip_draws_a_visible_waveform():
    """Under 40,000 samples the envelope step is 1: the samples are drawn as a line (07_train's
    decoded samples showed empty plots)."""
    import matplotlib

    matplotlib.use("Agg")
    from wavdiff_utils.views.plots import plot_waveform

    y = np.sin(np.linspace(0, 60, 12000)).astype(np.float32)
    ax = plot_waveform(y, 22050, title="short")
    drawn = [line for line in ax.get_lines() if len(line.get_xdata()) == len(y)]
    assert drawn and np.ptp(drawn[0].get_ydata()) > 1.9
    long = plot_waveform(np.tile(y, 10), 22050)
    assert long.collections and long.collections[0].get_paths()      # the envelope of a long clip


def _duet(path, rate: int = 22050, seconds: float = 3.0) -> np.ndarray:
    """A loud stereo file whose channels differ (left: a music-like mix, right: it delayed and
    quieter), written as float so samples beyond +-1 survive."""
    left = music_like(seconds, rate) * 1.3
    right = np.roll(left, 300) * 0.6
    y = np.stack([left, right], axis=1).astype(np.float32)
    sf.write(path, y, rate, subtype="FLOAT")
    return y


def test_a_stereo_batch_report_plays_its_tiles_in_stereo(tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    from wavdiff_utils.codec.metrics import snr_db
    from wavdiff_utils.codec.params import CodecParams
    from wavdiff_utils.io.audio import load_audio
    from wavdiff_utils.io.manifest import manifest_params, read_manifest
    from wavdiff_utils.io.tiles import side_tile_of
    from wavdiff_utils.views.batch_report import show_batch_report, song_strip, tile_round_trip
    from wavdiff_utils.views.encoded import tile_audio

    matplotlib.use("Agg")
    _duet(tmp_path / "duet.wav")
    out = tmp_path / "out"
    run_pipeline(tmp_path / "duet.wav", out, captioner="none", report=False, progress=False,
                 workers=1, log=None, params=CodecParams(size=128, channels="stereo"))
    song = out / "duet"
    man = read_manifest(song)
    params = manifest_params(man)
    t = man["tiles"][1]
    src = load_audio(tmp_path / "duet.wav", sample_rate=params.sample_rate, mono=False)
    y = tile_audio(song, t, params)
    assert y.shape == (t["end"] - t["start"], 2)
    for ch in (0, 1):                  # each channel rebuilt from mid +- side, near its source
        assert snr_db(src[t["start"]:t["end"], ch], y[:, ch]) > 40
    assert not np.allclose(y[:, 0], y[:, 1])
    assert tile_round_trip(song, 1)["stereo"] is True

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs: shown.extend(objs))
    before = len(plt.get_fignums())
    show_batch_report(out, max_players=2)
    titles = [plt.figure(n).axes[0].get_title() for n in plt.get_fignums()[before:]]
    plt.close("all")
    text = "\n".join(getattr(o, "data", None) or o.to_string() for o in shown)
    assert text.count("+ side (stereo)") == 2 and "(the mid, against the mono mix)" in text
    assert [t.split(":")[0] for t in titles] == ["duet mid", "duet side"]     # a strip each
    side = song_strip(song, channel="side").axes[0].images[0]
    assert side.get_clim() == (params.side_codec().db_min, params.db_max)
    plt.close("all")

    side_tile_of(song / t["file"]).unlink()          # a side tile gone: that player is the mid
    assert tile_audio(song, t, params).ndim == 1


def test_a_mono_song_plays_mono(tmp_path):
    from wavdiff_utils.codec.params import CodecParams
    from wavdiff_utils.io.manifest import manifest_params, read_manifest
    from wavdiff_utils.views.batch_report import song_strip, tile_round_trip
    from wavdiff_utils.views.encoded import tile_audio

    _duet(tmp_path / "duet.wav")
    out = tmp_path / "out"
    run_pipeline(tmp_path / "duet.wav", out, captioner="none", report=False, progress=False,
                 workers=1, log=None, params=CodecParams(size=128))
    man = read_manifest(out / "duet")
    y = tile_audio(out / "duet", man["tiles"][0], manifest_params(man))
    assert y.ndim == 1 and len(y) == man["tiles"][0]["end"] - man["tiles"][0]["start"]
    assert tile_round_trip(out / "duet", 0)["stereo"] is False
    for channel, words in (("side", "a mono song has no side tiles"), ("left", "'mid' or 'side'")):
        with pytest.raises(WavdiffError, match=words) as info:
            song_strip(out / "duet", channel=channel)
        assert "\n" not in str(info.value)
