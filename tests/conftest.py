import os

import numpy as np
import pytest
import torch
from hypothesis import Phase, settings
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

# Hypothesis profiles for tests/test_properties.py. "ci" (default): few examples,
# derandomized so that every CI run draws the same ones, and no shrinking (a
# failure is reported as found, in seconds). "thorough": a long, random bug hunt
# that shrinks what it finds (SKLIP_HYPOTHESIS_PROFILE=thorough). Each test asks
# for a share of the profile's max_examples.
settings.register_profile(
    "ci",
    max_examples=10,
    deadline=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, derandomize=False, database=None
)
settings.load_profile(os.environ.get("SKLIP_HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def standardised_split(X, y, seed=0):
    """75/25 stratified split, features standardised on the training part."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="session")
def digits_0_vs_8():
    X, y = load_digits(return_X_y=True)
    keep = (y == 0) | (y == 8)
    return standardised_split(X[keep], y[keep])


@pytest.fixture(scope="session")
def digits_10():
    return standardised_split(*load_digits(return_X_y=True))


@pytest.fixture(scope="session")
def moons():
    return standardised_split(*make_moons(2000, noise=0.2, random_state=0))


CNN_PARAMS = dict(image_shape=(1, 8, 8), alpha=100.0, margin=0.5, max_epochs=60)
TRANSLATED_PARAMS = dict(image_shape=(1, 20, 20), max_epochs=15)


@pytest.fixture(scope="session")
def translated():
    """benchmarks/images.py's translated digits (pixels in [0, 1]): 600 training rows."""
    from tests.helpers import translated_digits

    X, y = translated_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=600, test_size=120, stratify=y, random_state=0
    )
    return X_train, X_test, y_train, y_test


@pytest.fixture(scope="session")
def translated_0_vs_8(translated):
    X_train, X_test, y_train, y_test = translated
    train, test = np.isin(y_train, (0, 8)), np.isin(y_test, (0, 8))
    return X_train[train], X_test[test], y_train[train], y_test[test]


@pytest.fixture(scope="session")
def models(digits_0_vs_8, digits_10, moons, translated, translated_0_vs_8):
    """Fitted classifiers shared by the robustness tests: name -> (clf, X_test, y_test)."""
    from sklip import LipschitzClassifier

    fitted = {}
    for name, data, params in [
        ("digits-0-vs-8", digits_0_vs_8, {}),
        ("digits-10-mlp", digits_10, {}),
        ("digits-10-cnn", digits_10, CNN_PARAMS),
        ("moons", moons, dict(alpha=100.0, margin=0.25)),
        ("translated-10-cnn", translated, TRANSLATED_PARAMS),
        ("translated-0-vs-8-cnn", translated_0_vs_8, TRANSLATED_PARAMS),
    ]:
        X_train, X_test, y_train, y_test = data
        clf = LipschitzClassifier(random_state=0, **params).fit(X_train, y_train)
        fitted[name] = (clf, X_test, y_test)
    return fitted
