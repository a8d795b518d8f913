"""Shared test set-up. Under CI (CI=true) the Hugging Face parity tests must run: a missing
`transformers` is an error there, never a silent skip."""

import os

import pytest
import torch

try:
    import transformers  # noqa: F401

    HAVE_TRANSFORMERS = True
except ImportError:
    HAVE_TRANSFORMERS = False
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(
            "CI is set but `transformers` is not installed, so the parity tests cannot run; "
            "install the dev extra: pip install -e '.[dev]'"
        ) from None

requires_transformers = pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="pip install -e '.[dev]' for parity tests")


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Prepared corpora and trained tokenizers go to a folder of this test session, not ~/.cache."""
    os.environ["MINIBERT_CACHE"] = str(tmp_path_factory.mktemp("minibert-cache"))
    yield


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    # Tiny test models gain nothing from a second thread, and on a busy 2-core machine its
    # spin-waiting makes every test slower.
    torch.set_num_threads(1)
    yield
