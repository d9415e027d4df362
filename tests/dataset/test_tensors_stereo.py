"""Generated stereo (issue 25, item 3): 6-plane tensors (the mid's planes, then the side's)
written as a mid tile and a side tile, decoded to stereo with the phase rebuilt per channel;
3-plane tensors unchanged; hostile shapes and unwritable places."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from tests.audio_fixtures import music_like  # noqa: E402
from wavdiff_utils.codec.metrics import snr_db  # noqa: E402
from wavdiff_utils.codec.params import CodecParams  # noqa: E402
from wavdiff_utils.dataset import tensors as T  # noqa: E402
from wavdiff_utils.errors import BadParameterError, UnwritableOutputError  # noqa: E402
from wavdiff_utils.io.audio import load_audio  # noqa: E402
from wavdiff_utils.io.tiles import read_tile, read_tile_metadata  # noqa: E402
from wavdiff_utils.jobs.decode import decode_batch, plan_decode  # noqa: E402
from wavdiff_utils.jobs.encode import encode_song  # noqa: E402

P = CodecParams(size=128)
SR = 44100


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    """A 1 s duet's stereo tiles as 6-plane tensors (N, 6, 128, 128), and its source."""
    root = tmp_path_factory.mktemp("gen")
    a, b = music_like(1.0, SR, seed=4), music_like(1.0, SR, seed=5)
    src = root / "duet.wav"
    sf.write(src, np.stack([0.8 * a + 0.2 * b, 0.2 * a + 0.8 * b], 1), SR, subtype="FLOAT")
    encode_song(src, root / "t", params=CodecParams(size=128, channels="stereo"))
    mids = sorted((root / "t" / "duet").glob("duet_????.png"))
    x = torch.stack([torch.cat([T.pixels_to_tensor(read_tile(m).pixels),
                                T.pixels_to_tensor(read_tile(m.with_name(m.stem + ".side.png"))
                                                   .pixels)]) for m in mids])
    return x, src, mids


def test_six_planes_become_a_mid_and_a_side_tile_bit_exactly(stereo, tmp_path):
    x, _, mids = stereo
    paths = T.write_tensor_tiles(x, tmp_path / "gen", song="gen", params=P, start_index=2)
    assert [p.name for p in paths] == [f"gen_{i:04d}.png" for i in range(2, 2 + len(x))]
    sides = sorted(p.name for p in (tmp_path / "gen").glob("*.side.png"))
    assert sides == [f"gen_{i:04d}.side.png" for i in range(2, 2 + len(x))]
    for k in (0, len(x) - 1):                          # the pixels come back as they were
        assert np.array_equal(read_tile(paths[k]).pixels, read_tile(mids[k]).pixels)
        side = paths[k].with_name(paths[k].stem + ".side.png")
        assert np.array_equal(read_tile(side).pixels,
                              read_tile(mids[k].with_name(mids[k].stem + ".side.png")).pixels)
    mid_meta, side_meta = read_tile_metadata(paths[1]), read_tile_metadata(
        tmp_path / "gen" / "gen_0003.side.png")
    assert "channel" not in mid_meta and mid_meta["generated"] and mid_meta["tile_index"] == 3
    assert side_meta["channel"] == "side" and side_meta["channels"] == "stereo"
    assert side_meta["generated"] and side_meta["codec"] == P.side_codec().to_dict()
    assert all(side_meta[k] == mid_meta[k] for k in ("song", "tile_index", "start", "end"))


def test_generated_stereo_decodes_with_the_phase_rebuilt_per_channel(stereo, tmp_path):
    x, src, _ = stereo
    noisy = x.clone()
    noisy[:, [1, 2, 4, 5]] += 0.4 * torch.randn_like(noisy[:, [1, 2, 4, 5]],
                                                     generator=torch.Generator().manual_seed(0))
    T.write_tensor_tiles(list(noisy), tmp_path / "gen", song="gen", params=P)    # a sequence
    job, = plan_decode(tmp_path / "gen")
    assert job.sides is not None and len(job.tiles) == len(x)
    r = decode_batch(tmp_path / "gen", tmp_path / "wav", progress=False)
    res, = r.results
    y, _ = sf.read(res.output, dtype="float32")
    assert r.ok and y.shape == (len(x) * P.tile_samples, 2)
    # generated tiles go through the phase step, mid and side each (phase "auto"): their image
    # phase (noisy here) measured, a phase rebuilt where it is not coherent enough
    both = res.tiles + res.stereo.side_tiles
    assert all(t.coherence_db is not None and np.isfinite(t.sc_db) for t in both)
    assert any(t.method.startswith("fgla") for t in res.stereo.side_tiles)
    assert any(t.method.startswith("fgla") for t in res.tiles)
    assert len(r.tile_table()) == 2 * len(x)
    ref = load_audio(src, sample_rate=SR, mono=False)
    T.write_tensor_tiles(x, tmp_path / "clean", song="gen", params=P)
    exact = decode_batch(tmp_path / "clean", tmp_path / "exact", phase="image", progress=False)
    z, _ = sf.read(exact.results[0].output, dtype="float32")
    for k in (0, 1):                                   # the image phase taken as it is: exact
        assert snr_db(ref[:, k], z[:len(ref), k]) > 80
        assert snr_db(ref[:, k], y[:len(ref), k]) > 15          # rebuilt from noisy planes: 23 dB


def test_a_batch_array_of_six_planes_and_three_plane_tensors_unchanged(stereo, tmp_path):
    x, _, _ = stereo
    paths = T.write_tensor_tiles(x[:2].numpy(), tmp_path / "st", params=P)
    assert len(paths) == 2 and len(list((tmp_path / "st").glob("*.side.png"))) == 2
    mono = T.write_tensor_tiles(x[:2, :3], tmp_path / "mono", params=P)
    assert len(mono) == 2 and not list((tmp_path / "mono").glob("*.side.png"))
    assert "channel" not in read_tile_metadata(mono[0])
    assert plan_decode(tmp_path / "mono")[0].sides is None


@pytest.mark.parametrize("bad, match", [
    ([torch.zeros(6, 128, 128), torch.zeros(3, 128, 128)], "3, 6] planes in one call"),
    ([torch.zeros(5, 128, 128)], r"shape \(3, H, W\) \(mono\) or \(6, H, W\) \(stereo"),
    (torch.zeros(2, 6, 64, 64), "64x64 but the codec's tiles are 128x128"),
])
def test_bad_stereo_tensors_are_refused_in_one_line(tmp_path, bad, match):
    with pytest.raises(BadParameterError, match=match) as info:
        T.write_tensor_tiles(bad, tmp_path / "g", params=P)
    assert "\n" not in str(info.value) and not list((tmp_path / "g").glob("*.png"))


def test_unwritable_places_are_one_line_naming_them(stereo, tmp_path, monkeypatch):
    x, _, _ = stereo
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(UnwritableOutputError) as info:
        T.write_tensor_tiles(x[:1], tmp_path / "file", params=P)
    assert str(tmp_path / "file") in str(info.value) and "\n" not in str(info.value)

    def refuse(path, *a, **k):
        if str(path).endswith(".side.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)
    real = T.write_tile
    monkeypatch.setattr(T, "write_tile", refuse)
    with pytest.raises(UnwritableOutputError) as info:
        T.write_tensor_tiles(x[:1], tmp_path / "ro", song="g", params=P)
    assert str(Path(tmp_path / "ro" / "g_0000.side.png")) in str(info.value)
    assert "no permission" in str(info.value) and "\n" not in str(info.value)
