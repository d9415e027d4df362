"""The batch report shows every song's warnings in the words the terminal printed."""
import json

import numpy as np
import soundfile as sf

from tests.audio_fixtures import music_like
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
