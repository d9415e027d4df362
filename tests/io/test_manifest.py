"""require_manifest: a folder that is not a finished song folder is refused in one line that
names it, by every view that draws a song."""
import pytest

from wavdiff_utils.errors import MissingInputError
from wavdiff_utils.io.manifest import require_manifest


def _views():
    from wavdiff_utils.views.batch_report import song_strip, tile_round_trip
    from wavdiff_utils.views.encoded import plot_mid_side, tile_players
    from wavdiff_utils.views.plots import plot_tile_grid, tile_explorer

    return [require_manifest, song_strip, tile_round_trip, plot_mid_side, tile_players,
            plot_tile_grid, tile_explorer]


@pytest.mark.parametrize("fn", _views(), ids=lambda f: f.__name__)
def test_a_folder_without_a_manifest_is_one_line_naming_it(tmp_path, fn):
    folder = tmp_path / "half_done_song"
    folder.mkdir()
    (folder / "half_done_song_0000.png").write_bytes(b"")
    with pytest.raises(MissingInputError) as info:
        fn(folder)
    msg = str(info.value)
    assert "\n" not in msg and str(folder) in msg and "no manifest.json" in msg
