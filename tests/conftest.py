import os
import sys

# Keras reads its backend once, at import: the tests (and specs/keras.yaml) run it on torch,
# TensorFlow is not installed; tests/test_keras.py runs JAX in a subprocess
os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tests.fixtures.models importable as a factory


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", help="rewrite tests/cases/*/expected files")


@pytest.fixture
def update_goldens(request):
    return request.config.getoption("--update-goldens")


@pytest.fixture(autouse=True)
def _bundle_cache(tmp_path_factory, monkeypatch):
    # one bundle cache for the whole session, away from the user's home
    cache = tmp_path_factory.getbasetemp() / "nnspec-cache"
    monkeypatch.setenv("NNSPEC_CACHE", str(cache))


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    # train: writes its run under $NNSPEC_RUNS: each test its own, never the repository
    monkeypatch.setenv("NNSPEC_RUNS", str(tmp_path / "runs"))
