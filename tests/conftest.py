import pytest

from rdml.config import load_config
from rdml.trainer import train


def run(out, *overrides, **kwargs):
    """Train in this process on the synthetic data; returns the run record."""
    cfg = load_config(None, ["dataset=synthetic", "epochs=3", f"out={out}", *overrides])
    return train(cfg, argv=["test"], progress=False, **kwargs)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    run(out, "method=teacher", "epochs=4")
    return out
