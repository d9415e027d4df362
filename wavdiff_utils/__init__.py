"""wavdiff: music to lossless 16-bit PNG spectrogram tiles with synchronized captions, and back.

One module per concern:

- :mod:`wavdiff_utils.paths` - path resolution independent of the working folder
- :mod:`wavdiff_utils.params` - :class:`CodecParams`, YAML parameter files
- :mod:`wavdiff_utils.tiling` - tile sample spans (shared by encoder and captioners)
- :mod:`wavdiff_utils.audio_io` - reading (streamed), resampling, writing audio
- :mod:`wavdiff_utils.tile_io` - 16-bit PNG tiles with embedded metadata
- :mod:`wavdiff_utils.codec` - STFT <-> tile pixels, streaming encode and decode
- :mod:`wavdiff_utils.manifest` - per-song manifest
- :mod:`wavdiff_utils.metrics` - SNR, LSD, 16-bit PSNR
- :mod:`wavdiff_utils.compare` - tile-by-tile comparison reports
- :mod:`wavdiff_utils.pipeline` - batch encode with resume and failure reports
- :mod:`wavdiff_utils.decoding` - any folder of images back to audio, with a per-tile report
- :mod:`wavdiff_utils.phase` - phase reconstruction: exact, fast Griffin-Lim, PGHI, automatic
- :mod:`wavdiff_utils.captioning` - what both captioners share (spans, file names, tags)
- :mod:`wavdiff_utils.muq_captioner` - MuQ-MuLan tag captions
- :mod:`wavdiff_utils.qwen_captioner` - Qwen2-Audio prose captions
- :mod:`wavdiff_utils.batch` - the one-step pipeline (``python -m wavdiff_utils``)
- :mod:`wavdiff_utils.dataset` - training-ready export and the 16-bit loader
- :mod:`wavdiff_utils.plots` - figures and widgets for the notebooks
- :mod:`wavdiff_utils.report` - executed notebooks and single-file HTML reports
- :mod:`wavdiff_utils.benchmark` - throughput, fidelity and memory figures
- :mod:`wavdiff_utils.phase_benchmark` - phase methods on generated-looking tiles of real music
"""
__version__ = "0.1.0"

from .params import CodecParams, load_yaml_params  # noqa: F401
from .paths import REPO_ROOT, SAMPLE_AUDIO, resolve, song_id  # noqa: F401
from .tiling import TileSpan, tile_spans  # noqa: F401
