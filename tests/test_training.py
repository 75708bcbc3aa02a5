"""The shared training loop's choices: thread budget and work estimate."""

import torch
from sklearn.datasets import make_blobs

import sklip._training as training
from sklip import LipschitzClassifier
from sklip.nn import lipschitz_cnn, lipschitz_mlp


def test_forward_work_counts_dense_and_convolution_multiply_adds():
    # 3 -> 4 -> 2 -> 1: 12 + 8 + 2 multiply-adds per sample.
    assert training.forward_work(lipschitz_mlp(3, (4, 2), 1), batch_size=10) == 220
    # One 3x3 convolution 1 -> 2 channels on 4x4 ("same"): 9 * 2 * 16 = 288;
    # unshuffled to 8 channels of 2x2, flattened (32) into the 2-output layer: 64.
    net = lipschitz_cnn((1, 4, 4), (2,), (), 2)
    assert training.forward_work(net, batch_size=1) == 288 + 64


def _threads_of_each_epoch(monkeypatch) -> list[int]:
    """Record torch's thread count at the start of every training epoch."""
    seen = []
    original = training._run_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", spy)
    return seen


def test_small_fits_train_on_one_thread_and_restore_the_setting(monkeypatch):
    seen = _threads_of_each_epoch(monkeypatch)
    X, y = make_blobs(100, n_features=4, centers=2, random_state=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_large_steps_keep_torchs_thread_setting(monkeypatch):
    monkeypatch.setattr(training, "SMALL_STEP", 0)
    seen = _threads_of_each_epoch(monkeypatch)
    X, y = make_blobs(100, n_features=4, centers=2, random_state=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=1, random_state=0).fit(X, y)
        assert seen == [2]
    finally:
        torch.set_num_threads(before)


def test_the_same_seed_trains_the_same_network_whatever_the_thread_count():
    # A dask worker runs one thread, the client two: GridSearchCV's results must
    # not depend on where a candidate ran (the orthogonal initialisation's QR
    # differs in its last bits with the thread count).
    X, y = make_blobs(200, n_features=64, centers=3, random_state=0)
    before = torch.get_num_threads()
    scores = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            clf = LipschitzClassifier(hidden_layer_sizes=(128,), max_epochs=5, random_state=0)
            scores.append(clf.fit(X, y).loss_curve_)
    finally:
        torch.set_num_threads(before)
    assert scores[0] == scores[1]
