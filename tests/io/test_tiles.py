import cv2
import numpy as np
import pytest

from wavdiff_utils.io.tiles import (TileImageError, find_tiles, parse_tile_name, read_tile,
                                    read_tile_metadata, tile_name, write_tile)


@pytest.fixture
def pixels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 65536, size=(32, 32, 3), dtype=np.uint16)


def test_write_read_is_bit_exact_and_keeps_metadata(tmp_path, pixels):
    meta = {"song": "x", "tile_index": 3, "codec": {"size": 32}, "unicode": "été"}
    path = write_tile(tmp_path / "x_0003.png", pixels, meta)
    tile = read_tile(path, expected_size=32)
    assert tile.bit_depth == 16 and np.array_equal(tile.pixels, pixels)
    assert tile.metadata == meta == read_tile_metadata(path)
    # the channel order on disk is RGB for other readers too: OpenCV gives BGR back
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1], pixels)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp file left


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_tile(tmp_path / "a_0000.png", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape,dtype,match", [
    ((32, 32, 3), np.uint16, "expected 16x16"),
    ((16, 8, 3), np.uint16, "is 8x16 pixels"),
])
def test_wrong_images_are_named(tmp_path, shape, dtype, match):
    path = tmp_path / "bad_0000.png"
    cv2.imwrite(str(path), np.zeros(shape, dtype))
    with pytest.raises(TileImageError, match=match) as err:
        read_tile(path, expected_size=16)
    assert "bad_0000.png" in str(err.value)


def test_eight_bit_and_grey_are_accepted_with_warnings(tmp_path):
    p8 = tmp_path / "a_0000.png"
    cv2.imwrite(str(p8), np.full((8, 8, 3), 255, np.uint8))
    with pytest.warns(UserWarning, match="8-bit"):
        t = read_tile(p8)
    assert t.bit_depth == 8 and t.pixels.max() == 65535
    pg = tmp_path / "a_0001.png"
    cv2.imwrite(str(pg), np.full((8, 8), 1000, np.uint16))
    with pytest.warns(UserWarning, match="magnitude only"):
        t = read_tile(pg)
    assert t.pixels.ndim == 2 and not t.has_phase


@pytest.mark.parametrize("content", [b"", b"not a png at all"])
def test_unreadable_image(tmp_path, content):
    p = tmp_path / "z_0000.png"
    p.write_bytes(content)
    with pytest.raises(TileImageError, match=r"z_0000.png: is (empty|not an image file)"):
        read_tile(p)


def test_names_and_grouping(tmp_path, pixels):
    assert tile_name("song", 7) == "song_0007.png"
    assert parse_tile_name("my_song_0012.png") == ("my_song", 12)
    assert parse_tile_name("cover.png") is None
    for name in ["b_0001.png", "b_0000.png", "a_0000.png", "notes.png"]:
        write_tile(tmp_path / name, pixels)
    groups = find_tiles(tmp_path)
    assert list(groups) == ["a", "b"]
    assert [p.name for p in groups["b"]] == ["b_0000.png", "b_0001.png"]


@pytest.mark.parametrize("compression", [0, 1, 9, "small"])
def test_every_compression_is_lossless(tmp_path, compression):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 65536, (64, 64, 3), dtype=np.uint16)
    px[:, :32] = 1000                                   # some structure to compress
    p = write_tile(tmp_path / f"c_{compression}.png", px, {"k": 1}, compression=compression)
    back = read_tile(p)
    assert np.array_equal(back.pixels, px) and back.metadata == {"k": 1}


def test_bad_compression_is_named(tmp_path):
    with pytest.raises(ValueError, match="compression must be a zlib level 0-9 or 'small', got 11"):
        write_tile(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint16), compression=11)
