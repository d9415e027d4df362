"""Fixtures shared by the training tests (tests/test_train.py, tests/test_train_data.py)."""
import pytest

from wavdiff_utils.train.data import build_demo_dataset

#: The tiny demo dataset's settings: the sample's first 2 s as 32x32 tiles.
TINY = dict(size=32, seconds=2.0)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The demo dataset, small: the sample's first 2 s as 32x32 tiles, four songs (64 training
    tiles), one song in validation.  Built once per session; tests must not change it."""
    return build_demo_dataset(tmp_path_factory.mktemp("train") / "ds", **TINY)
