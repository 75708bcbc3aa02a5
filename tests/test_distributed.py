"""Model selection on a dask.distributed cluster (the ``dask`` extra; skipped without it)."""

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV

from sklip import LipschitzClassifier, WassersteinEstimator

distributed = pytest.importorskip("distributed")

GRID = {"alpha": [1.0, 20.0], "margin": [0.1, 1.0]}


def _searches(n_jobs):
    params = dict(hidden_layer_sizes=(8,), max_epochs=5, device="auto", random_state=0)
    return [
        GridSearchCV(estimator, GRID, cv=2, n_jobs=n_jobs)
        for estimator in (LipschitzClassifier(**params), WassersteinEstimator(**params))
    ]


def _fit_small(X, y):
    return LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=0).fit(X, y)


@pytest.mark.slow
def test_grid_search_on_a_local_dask_cluster_matches_the_sequential_run():
    X, y = make_blobs(120, n_features=4, centers=2, cluster_std=2.0, random_state=0)
    sequential = [search.fit(X, y) for search in _searches(n_jobs=1)]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        workers = set(client.scheduler_info()["workers"])
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            distributed_runs = [search.fit(X, y) for search in _searches(n_jobs=-1)]
        ran_on = {task["worker"] for task in tasks.data}
        # A model fitted on a worker comes back pickled (CPU tensors, Adam state
        # included), predicts here and trains on where it stopped.
        fitted_there = client.submit(_fit_small, X, y).result()
    fitted_here = _fit_small(X, y)
    assert np.array_equal(fitted_there.predict(X), fitted_here.predict(X))
    assert np.array_equal(
        fitted_there.partial_fit(X, y).decision_function(X),
        fitted_here.partial_fit(X, y).decision_function(X),
    )
    assert ran_on and ran_on <= workers  # the fits ran on the cluster's workers
    for one, other in zip(sequential, distributed_runs, strict=True):
        assert one.best_params_ == other.best_params_
        assert np.array_equal(
            one.cv_results_["mean_test_score"], other.cv_results_["mean_test_score"]
        )
        assert np.array_equal(one.predict(X), other.predict(X))
