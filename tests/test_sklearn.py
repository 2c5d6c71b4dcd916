"""fastbp.sklearn: scikit-learn's own estimator checks; equality with scikit-learn's MLP where
the arithmetic is the same (one batch per epoch, no shuffling, float64: identical initial
weights, steps, schedules, validation split); held-out quality beside scikit-learn's on
digits and Friedman #1; labels, partial_fit, warm_start, meta-estimators, pickling, errors.

The tests run fastbp on one thread and scikit-learn's BLAS on one thread (fixture below):
the data sets are small, and on a machine whose cores are busy a thread pool's barrier
waits for a time slice at every parallel region (measured here: 200 epochs of a 150-row
fit took 0.1 s on one thread, 1.4 to 3.5 s on two).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network as sknn
from sklearn.datasets import load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

import fastbp as fb
from fastbp.sklearn import MLPClassifier, MLPRegressor

# every fit below with fewer than 200 rows trains on one batch per epoch (batch_size="auto")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def one_thread():
    previous = fb.get_num_threads()
    fb.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    fb.set_num_threads(previous)


def _params(est) -> list[np.ndarray]:
    return est.coefs_ + est.intercepts_


def _assert_same_params(ours, theirs, rtol=1e-10, atol=1e-12) -> None:
    for a, b in zip(_params(ours), _params(theirs), strict=True):
        assert a.shape == b.shape
        assert_allclose(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------- estimator checks
def _expected_failed_checks(estimator) -> dict[str, str]:
    failing = {
        # scikit-learn's own MLPs fail it too with their stochastic solvers (its test suite
        # switches them to lbfgs, or to sgd with tol=1e-2, for this check)
        "check_sample_weight_equivalence_on_dense_data": (
            "mini-batch training: repeating a row changes the batches and the number of steps, so weight 2 "
            "is not the same fit as a repeated row"
        ),
    }
    failing["check_sample_weight_equivalence_on_sparse_data"] = failing["check_sample_weight_equivalence_on_dense_data"]
    if estimator.dtype == "float32":
        # these may pass or fail (xfail is not strict): see test_predict_rows_are_independent
        reason = (
            "float32, the default dtype: a row's prediction may differ by 1 ulp (1.2e-7 relative) with its "
            "position in BLAS's GEMM blocks, above the check's rtol of 1e-7"
        )
        failing["check_methods_subset_invariance"] = reason
        failing["check_methods_sample_order_invariance"] = reason
    if estimator.dtype == "float32" and getattr(estimator, "solver", None) == "lbfgs":
        failing["check_classifiers_multilabel_output_format_predict_proba"] = (
            "float32: L-BFGS fits the check's separable labels to logits below -104, where float32's sigmoid "
            "is exactly 0, and the check wants every probability > 0 (float64 gives 1e-20 there)"
        )
    if getattr(estimator, "loss", None) == "poisson":
        failing["check_regressors_train"] = (
            "R^2 > 0.5 is asked on a linear target shifted to [1, 7.5]: loss='poisson' (log link) reaches 0.38 "
            "in 200 epochs, as scikit-learn's MLPRegressor(loss='poisson') does (0.38)"
        )
        failing["check_regressor_multioutput"] = (
            "the check's targets are negative (it does not apply the positive_only tag), and loss='poisson' "
            "rejects y < 0"
        )
    return failing


_CHECKED = [MLPClassifier(), MLPRegressor(), MLPRegressor(loss="poisson"), MLPClassifier(solver="lbfgs"),
            MLPRegressor(solver="lbfgs")]  # fmt: skip


@parametrize_with_checks(_CHECKED, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_predict_rows_are_independent():
    """A row's prediction does not depend on the rows predicted with it, to rounding (BLAS's
    GEMM blocks round differently): 1e-15 in float64, a few float32 ulps of the outputs'
    scale (about 1) in float32."""
    rng = np.random.default_rng(16)
    X = rng.normal(size=(50, 3))
    for dtype, tol in (("float64", 1e-14), ("float32", 1e-6)):
        reg = MLPRegressor(hidden_layer_sizes=(64, 32), dtype=dtype, max_iter=5, random_state=0).fit(X, X[:, 0])
        full = reg.predict(X)
        parts = np.concatenate([reg.predict(part) for part in np.array_split(X, 7)])
        assert_allclose(parts, full, rtol=tol, atol=tol)
        assert_allclose(reg.predict(X[::-1])[::-1], full, rtol=tol, atol=tol)


def test_prediction_of_plain_float_arrays_skips_nothing_scikit_learn_checks():
    """Float ndarrays skip validate_data (its ~60 us is most of a one-row call); they must
    give what the validated path gives, and scikit-learn's own errors and warnings."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 4))
    y = np.array(["ant", "bee", "cat"])[rng.integers(0, 3, 80)]
    clf = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    for arr in (X, X.astype(np.float32), X[:, ::1][::3], np.asfortranarray(X)):
        validated = clf.predict_proba(arr.tolist())  # a list takes validate_data
        fast = clf.predict_proba(arr)
        assert fast.dtype == (np.float32 if arr.dtype == np.float32 else np.float64)
        assert_allclose(fast, validated, rtol=1e-6 if arr.dtype == np.float32 else 0)
        assert_array_equal(clf.predict(arr), clf.predict(arr.tolist()))
    assert set(clf.predict(X)) <= {"ant", "bee", "cat"}
    bad = X[:2].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):  # scikit-learn's message
        clf.predict(bad)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="after conversion to float32"):  # finite in float64, not float32
        clf.predict(np.full((1, 4), 1e39))
    named = MLPClassifier((16,), max_iter=5, random_state=0).fit(pd.DataFrame(X, columns=list("abcd")), y)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        named.predict(X[:2])


# ---------------------------------------------------------------------- same arithmetic as scikit-learn
def _toy(kind: str, rng: np.random.Generator, n: int = 60):
    X = rng.normal(size=(n, 5))
    y = {
        "multiclass": lambda: np.array(["ant", "bee", "cat"])[rng.integers(0, 3, n)],
        "binary": lambda: rng.integers(0, 2, n) * 7 - 3,  # labels -3 and 4
        "multilabel": lambda: rng.integers(0, 2, (n, 4)),
        "squared_error": lambda: X[:, :1] * 2 + rng.normal(size=(n, 1)),
        "squared_error_3": lambda: X[:, :3] * 2 + rng.normal(size=(n, 3)),
        "poisson": lambda: rng.poisson(2.0, n),
        "poisson_3": lambda: rng.poisson(2.0, (n, 3)),
    }[kind]()
    if kind.startswith(("squared_error", "poisson")):
        loss = kind.split("_3")[0]
        return X, (y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y), MLPRegressor, sknn.MLPRegressor, {"loss": loss}
    return X, y, MLPClassifier, sknn.MLPClassifier, {}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize(
    "kind", ["multiclass", "binary", "multilabel", "squared_error", "squared_error_3", "poisson", "poisson_3"]
)
def test_full_batch_training_equals_sklearn(kind, solver, weighted):
    """One batch per epoch and no shuffling: the same initial weights and the same steps, so
    the same coefs_ and loss_curve_ as scikit-learn to rounding. This pins every scale
    factor: learning rate per loss and output count, L2 ``alpha``, Adam's epsilon, the
    sample-weight normalisation and the loss conventions."""
    rng = np.random.default_rng(0)
    X, y, ours, theirs, extra = _toy(kind, rng)
    sw = rng.uniform(0.2, 2.0, X.shape[0]) if weighted else None
    kw = dict(hidden_layer_sizes=(7, 4), activation="tanh", solver=solver, shuffle=False,
              max_iter=6, random_state=3, alpha=0.3, learning_rate_init=0.02, **extra)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(dtype="float64", **kw).fit(X, y, sample_weight=sw)
        b = theirs(**kw).fit(X, y, sample_weight=sw)
    _assert_same_params(a, b)
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    assert a.loss_ == a.loss_curve_[-1]
    assert (a.n_iter_, a.t_, a.n_layers_, a.n_outputs_, a.out_activation_) == (
        b.n_iter_, b.t_, b.n_layers_, b.n_outputs_, b.out_activation_,
    )  # fmt: skip
    assert_allclose(a.predict_proba(X) if hasattr(a, "predict_proba") else a.predict(X),
                    b.predict_proba(X) if hasattr(b, "predict_proba") else b.predict(X), rtol=1e-10)  # fmt: skip


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array", "coo_matrix"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", ["multiclass", "squared_error_3"])
def test_sparse_input_equals_sklearn(kind, solver, fmt):
    """Sparse X (never densified here; COO converted to CSR, as scikit-learn does): the same
    coefs_ and loss curve as scikit-learn given the same sparse matrix, and the same
    predictions for sparse and dense rows."""
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(1)
    X, y, ours, theirs, extra = _toy(kind, rng)
    X[rng.uniform(size=X.shape) < 0.6] = 0.0
    Xs = getattr(sparse, fmt)(X)
    kw = dict(hidden_layer_sizes=(7, 4), activation="tanh", solver=solver, shuffle=False, batch_size=X.shape[0],
              max_iter=6, random_state=3, alpha=0.3, learning_rate_init=0.02, **extra)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(dtype="float64", **kw).fit(Xs, y)
        b = theirs(**kw).fit(Xs, y)
    _assert_same_params(a, b, rtol=1e-9)
    if solver != "lbfgs":
        assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    predict = a.predict_proba if hasattr(a, "predict_proba") else a.predict
    assert_allclose(predict(Xs), predict(X), rtol=1e-12, atol=1e-15)
    assert_allclose(predict(Xs), b.predict_proba(Xs) if hasattr(b, "predict_proba") else b.predict(Xs), rtol=1e-9)


@pytest.mark.parametrize("est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize(
    "extra",
    [
        dict(learning_rate="invscaling", power_t=0.3, learning_rate_init=0.5),
        dict(learning_rate="adaptive", tol=10.0, n_iter_no_change=1, learning_rate_init=0.1),
        dict(early_stopping=True, n_iter_no_change=3, learning_rate_init=0.3),
        dict(early_stopping=True, learning_rate="adaptive", n_iter_no_change=2, learning_rate_init=0.3, tol=0.5),
        dict(momentum=0.0, nesterovs_momentum=False, learning_rate="invscaling", learning_rate_init=0.5),
        dict(nesterovs_momentum=False, tol=0.05, learning_rate_init=0.2),
    ],
    ids=["invscaling", "adaptive", "early_stopping", "early_stopping_adaptive", "plain_sgd", "momentum_tol"],
)
def test_sgd_schedules_and_stopping_equal_sklearn(est, extra):
    """Learning-rate schedules (with momentum: fastbp's buffer is rescaled when the rate
    changes), the tol/n_iter_no_change rule, early stopping's split, validation scores and
    the restored best weights, all as scikit-learn's, epoch for epoch."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 5))
    y = rng.integers(0, 3, 80) if est is MLPClassifier else X[:, 0] * 2 + rng.normal(size=80) * 0.1
    kw = dict(hidden_layer_sizes=(7,), solver="sgd", shuffle=False, max_iter=40, random_state=1,
              **extra)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = est(dtype="float64", **kw).fit(X, y)
        b = getattr(sknn, est.__name__)(**kw).fit(X, y)
    assert a.n_iter_ == b.n_iter_
    _assert_same_params(a, b, rtol=1e-9)
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    if kw.get("early_stopping"):
        assert a.best_loss_ is None
        assert_allclose(a.validation_scores_, b.validation_scores_, rtol=1e-10)
        assert a.best_validation_score_ == pytest.approx(b.best_validation_score_, rel=1e-10)
    else:
        assert a.validation_scores_ is None and a.best_validation_score_ is None
        assert a.best_loss_ == pytest.approx(b.best_loss_, rel=1e-10)


def test_early_stopping_restores_the_best_weights():
    """After stopping, the model scores best_validation_score_ on the validation rows
    (scikit-learn's split: the generator draws the initial weights first)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    clf = MLPClassifier((16,), early_stopping=True, n_iter_no_change=4, learning_rate_init=0.05, max_iter=100,
                        random_state=7, validation_fraction=0.2).fit(X, y)  # fmt: skip
    assert clf.n_iter_ < 100 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > clf.validation_scores_[-1]
    rs = np.random.RandomState(7)
    for fan_in, fan_out in [(4, 16), (16, 1)]:
        rs.uniform(size=(fan_in, fan_out)), rs.uniform(size=fan_out)
    _, X_val, _, y_val = train_test_split(X, y.reshape(-1, 1), random_state=rs, test_size=0.2, stratify=y)
    assert clf.score(X_val, y_val.ravel()) == pytest.approx(clf.best_validation_score_)


# ---------------------------------------------------------------------- L-BFGS
def _objective_calls(monkeypatch, fit) -> list[tuple[float, np.ndarray]]:
    """(loss, gradient) at every L-BFGS-B evaluation ``fit()`` makes (scipy's minimize, spied on)."""
    import scipy.optimize

    calls, minimize = [], scipy.optimize.minimize

    def spy(fun, x0, args=(), **kw):
        def recorded(x, *a):
            loss, grad = fun(x, *a)
            calls.append((float(loss), np.array(grad, dtype=np.float64)))
            return loss, grad

        return minimize(recorded, x0, args=args, **kw)

    with monkeypatch.context() as m:
        m.setattr(scipy.optimize, "minimize", spy)
        fit()
    return calls


@pytest.mark.parametrize("case", ["multiclass", "binary", "multilabel", "mse", "poisson"])
def test_lbfgs_objective_is_sklearns(monkeypatch, case):
    """float64, from scikit-learn's initial weights: each of the first 6 evaluations of the
    objective (loss and gradient, L2 term and sample weights included) equals scikit-learn's
    to rounding (measured within 2e-16 relative; 1e-10 allowed for sums in another order),
    so scipy takes the same steps. Later a far trial step of the line search may see the
    losses part: scikit-learn's log-loss takes log(1 - p) from the probability p, which
    loses digits as p nears 1 (7.6e-7 relative at the binary case's 7th evaluation, with the
    gradients still within 7e-14), where fastbp's takes it from the logit."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 4))
    sw = rng.uniform(0.5, 2.0, 90)
    kw = dict(hidden_layer_sizes=(7, 5), solver="lbfgs", alpha=1e-2, max_iter=10, random_state=1)
    if case in ("mse", "poisson"):
        y = np.exp(0.3 * X[:, :2]) if case == "poisson" else X[:, :2] ** 2
        ours = MLPRegressor(**kw, dtype="float64", loss="squared_error" if case == "mse" else case)
        theirs = sknn.MLPRegressor(**kw, loss="squared_error" if case == "mse" else case)
    else:
        y = {"multiclass": rng.integers(0, 3, 90), "binary": rng.integers(0, 2, 90),
             "multilabel": rng.integers(0, 2, (90, 3))}[case]  # fmt: skip
        ours, theirs = MLPClassifier(**kw, dtype="float64"), sknn.MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = _objective_calls(monkeypatch, lambda: ours.fit(X, y, sample_weight=sw))
        b = _objective_calls(monkeypatch, lambda: theirs.fit(X, y, sample_weight=sw))
    assert len(a) >= 6 and len(b) >= 6
    for (la, ga), (lb, gb) in zip(a[:6], b[:6]):
        assert la == pytest.approx(lb, rel=1e-10)
        assert_allclose(ga, gb, rtol=1e-8, atol=1e-12)


def test_lbfgs_fits_digits_like_sklearn():
    """Same data, weights and objective: the same loss after the same iterations, to the
    rounding float64 sums accumulate over 17 iterations (measured 4e-4 relative)."""
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kw = dict(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=200, random_state=0)
    ours = MLPClassifier(**kw, dtype="float64").fit(X, y)
    theirs = sknn.MLPClassifier(**kw).fit(X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-2)
    assert abs(ours.n_iter_ - theirs.n_iter_) <= 2
    assert ours.score(X, y) == theirs.score(X, y) == 1.0
    default = MLPClassifier(**kw).fit(X, y)  # float32
    assert default.loss_ < 1e-3 and default.score(X, y) == 1.0


def test_lbfgs_follows_sklearns_rules():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier((8,), solver="lbfgs", max_iter=3, random_state=0, early_stopping=True)
    assert not hasattr(clf, "partial_fit")  # hidden for lbfgs, as scikit-learn does
    assert hasattr(MLPClassifier(), "partial_fit") and hasattr(MLPRegressor(solver="sgd"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 3 iteration"):
        clf.fit(X, y)
    assert clf.n_iter_ == 3 and np.isfinite(clf.loss_)
    for name in ("loss_curve_", "validation_scores_", "best_validation_score_", "best_loss_"):
        assert not hasattr(clf, name), name  # early_stopping is for the stochastic solvers
    first = clf.loss_
    clf.set_params(warm_start=True, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)  # goes on from the fitted weights
    assert clf.loss_ < first
    with pytest.raises(ValueError, match="dropout=0.2 needs a stochastic solver"):
        MLPClassifier((8,), solver="lbfgs", dropout=0.2).fit(X, y)
    clf.set_params(solver="adam", warm_start=True, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)  # a stochastic warm start after lbfgs starts its per-epoch record
    assert len(clf.loss_curve_) == 2


def test_diverging_fit_with_early_stopping_runs_out_like_sklearn():
    """scikit-learn's rule (its issue 29504): with early_stopping=True a diverging fit raises
    nothing; it runs max_iter epochs, their losses and validation scores NaN from the
    divergence on, warns that the iterations ran out, and keeps the best epoch's weights."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    kw = dict(learning_rate_init=1, activation="identity", solver="sgd", early_stopping=True, max_iter=20,
              random_state=0)  # fmt: skip
    fitted = {}
    for name, cls in (("ours", MLPRegressor), ("theirs", sknn.MLPRegressor)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted[name] = cls(**kw).fit(X, y.astype(float))
        assert any(w.category is ConvergenceWarning for w in caught), name
    ours, theirs = fitted["ours"], fitted["theirs"]
    assert ours.n_iter_ == theirs.n_iter_ == 20
    assert len(ours.validation_scores_) == len(ours.loss_curve_) == 20
    nan = np.isnan(ours.validation_scores_)
    first = int(nan.argmax())
    assert 0 < first and nan[first:].all()  # finite scores, then NaN to the end
    assert np.isnan(ours.loss_curve_[first:]).all() and np.isnan(ours.loss_)
    assert ours.t_ == 20 * round(0.9 * X.shape[0])
    # the first epochs are scikit-learn's (float32 against float64, lr = 1), the best is kept
    assert_allclose(ours.validation_scores_[:2], theirs.validation_scores_[:2], rtol=1e-5)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-5)
    assert all(np.isfinite(w).all() for w in [*ours.coefs_, *ours.intercepts_])
    assert np.isfinite(ours.predict(X)).all()
    # without early stopping the divergence is an error, as scikit-learn's
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        MLPRegressor(**{**kw, "early_stopping": False}).fit(X, y.astype(float))


# ---------------------------------------------------------------------- quality
def test_digits_matches_sklearn_held_out_accuracy():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    kw = dict(hidden_layer_sizes=(64,), max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X_train, y_train)  # float32, the default
        theirs = sknn.MLPClassifier(**kw).fit(X_train, y_train)
    acc_ours, acc_theirs = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    assert acc_ours >= 0.95
    assert abs(acc_ours - acc_theirs) <= 0.01, (acc_ours, acc_theirs)
    # the same training trajectory within rounding and batch order
    assert ours.loss_curve_[-1] == pytest.approx(theirs.loss_curve_[-1], rel=0.1)
    assert ours.coefs_[0].dtype == np.float32


def test_friedman_matches_sklearn_held_out_r2():
    X, y = make_friedman1(n_samples=1500, noise=0.5, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    mean, std = y_train.mean(), y_train.std()
    y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    kw = dict(hidden_layer_sizes=(64,), max_iter=100, learning_rate_init=0.003, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(**kw).fit(X_train, y_train)
        theirs = sknn.MLPRegressor(**kw).fit(X_train, y_train)
    r2_ours, r2_theirs = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    assert r2_ours >= 0.9
    assert abs(r2_ours - r2_theirs) <= 0.01, (r2_ours, r2_theirs)


# ---------------------------------------------------------------------- labels and outputs
def _blobs(rng, n=240, k=3):
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])[:k]
    labels = rng.integers(0, k, n)
    return centers[labels] + rng.normal(size=(n, 2)), labels


def test_string_labels_multiclass():
    rng = np.random.default_rng(3)
    X, labels = _blobs(rng)
    names = np.array(["zebra", "ant", "moose"])
    clf = MLPClassifier((16,), learning_rate_init=0.02, max_iter=100, random_state=0).fit(X, names[labels])
    assert_array_equal(clf.classes_, ["ant", "moose", "zebra"])
    assert clf.out_activation_ == "softmax" and clf.n_outputs_ == 3
    assert clf.score(X, names[labels]) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (240, 3) and proba.dtype == np.float64
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-6)


def test_binary_uses_one_logistic_output():
    rng = np.random.default_rng(4)
    X, labels = _blobs(rng, k=2)
    y = np.where(labels == 1, "yes", "no")
    clf = MLPClassifier((8,), learning_rate_init=0.02, max_iter=100, random_state=0).fit(X, y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1 and clf.coefs_[-1].shape == (8, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (240, 2)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.predict(X), np.where(proba[:, 1] > 0.5, "yes", "no"))
    assert clf.score(X, y) > 0.95


def test_multilabel_indicator():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < 0.5]).astype(int)
    clf = MLPClassifier((32,), learning_rate_init=0.01, max_iter=150, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert_array_equal(clf.classes_, [0, 1, 2])
    pred = clf.predict(X)
    assert pred.shape == (300, 3) and set(np.unique(pred)) <= {0, 1}
    assert clf.predict_proba(X).shape == (300, 3)
    assert clf.score(X, Y) > 0.9  # subset accuracy


def test_regressor_multi_output_and_dtype_follows_input():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([X[:, 0] - X[:, 1], 0.5 * X[:, 2]])
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=200, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (200, 2) and reg.predict(X).dtype == np.float64
    assert reg.predict(X.astype(np.float32)).dtype == np.float32
    assert reg.score(X, Y) > 0.95
    reg64 = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, dtype=None, random_state=0).fit(X.astype(np.float32), Y)
    assert reg64.coefs_[0].dtype == np.float32
    reg64 = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, dtype=None, random_state=0).fit(X, Y)
    assert reg64.coefs_[0].dtype == np.float64


def test_poisson_regressor_predicts_rates():
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, size=(2000, 2))
    rate = np.exp(0.8 * X[:, 0] - 0.5 * X[:, 1])
    y = rng.poisson(rate)
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=60,
                       random_state=0).fit(X, y)  # fmt: skip
    assert reg.out_activation_ == "exp"
    pred = reg.predict(X)
    assert (pred > 0).all()
    assert np.corrcoef(np.log(pred), np.log(rate))[0, 1] > 0.95
    with pytest.raises(ValueError, match="poisson.*y >= 0"):
        MLPRegressor(loss="poisson").fit(X, -y)


def test_extra_activation_and_dropout():
    rng = np.random.default_rng(8)
    X, labels = _blobs(rng)
    for kw in (dict(activation="gelu"), dict(activation="logistic", dropout=0.2)):
        clf = MLPClassifier((32,), learning_rate_init=0.02, max_iter=100, random_state=0, **kw).fit(X, labels)
        assert clf.score(X, labels) > 0.95, kw
    # dropout is a training-time layer: predictions are deterministic
    assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))


# ---------------------------------------------------------------------- incremental training
def test_partial_fit_equals_sklearn_and_checks_classes():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(90, 4))
    y = rng.integers(0, 3, 90)
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", learning_rate_init=0.1, random_state=0,
              learning_rate="invscaling")  # fmt: skip
    ours, theirs = MLPClassifier(dtype="float64", **kw), sknn.MLPClassifier(**kw)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        ours.partial_fit(X, y)
    for chunk in np.array_split(np.arange(90), 3):
        ours.partial_fit(X[chunk], y[chunk], classes=[0, 1, 2])
        theirs.partial_fit(X[chunk], y[chunk], classes=[0, 1, 2])
    assert ours.n_iter_ == 1 and ours.t_ == 90 and len(ours.loss_curve_) == 3
    _assert_same_params(ours, theirs)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    with pytest.raises(ValueError, match="classes not in"):
        ours.partial_fit(X[:5], np.array([0, 1, 2, 3, 3]))
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    for _ in range(3):
        reg.partial_fit(X, X[:, 0])
    assert reg.n_iter_ == 1 and reg.t_ == 270 and reg.loss_curve_[-1] < reg.loss_curve_[0]


def test_partial_fit_on_sparse_chunks_equals_sklearn():
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(9)
    X = rng.normal(size=(90, 6))
    X[rng.uniform(size=X.shape) < 0.5] = 0.0
    y = rng.integers(0, 3, 90)
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", learning_rate_init=0.1, random_state=0)
    ours, theirs = MLPClassifier(dtype="float64", **kw), sknn.MLPClassifier(**kw)
    for chunk in np.array_split(np.arange(90), 3):
        ours.partial_fit(sparse.csr_matrix(X[chunk]), y[chunk], classes=[0, 1, 2])
        theirs.partial_fit(sparse.csr_matrix(X[chunk]), y[chunk], classes=[0, 1, 2])
    _assert_same_params(ours, theirs)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


def test_warm_start_continues_like_sklearn():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(70, 4))
    y = X[:, 0] - 2 * X[:, 1]
    kw = dict(hidden_layer_sizes=(6,), shuffle=False, random_state=0, max_iter=5, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPRegressor(dtype="float64", **kw), sknn.MLPRegressor(**kw)
        for est in (ours, theirs):
            est.fit(X, y)
            est.set_params(max_iter=3).fit(X, y)  # continues the weights, a fresh Adam (as scikit-learn)
    assert ours.n_iter_ == 3 and len(ours.loss_curve_) == 8 and ours.t_ == 8 * 70
    _assert_same_params(ours, theirs)
    clf = MLPClassifier((4,), max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, (y > 0).astype(int))
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        clf.fit(X, np.arange(70) % 3)
    with pytest.raises(ValueError, match="hidden_layer_sizes or the number of outputs changed"):
        clf.set_params(hidden_layer_sizes=(5,)).fit(X, (y > 0).astype(int))


def test_convergence_and_tol():
    rng = np.random.default_rng(11)
    X, labels = _blobs(rng)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier((8,), max_iter=3, random_state=0).fit(X, labels)
    clf = MLPClassifier((8,), max_iter=500, tol=1e3, n_iter_no_change=2, random_state=0).fit(X, labels)
    # epoch 1 sets best_loss_; from epoch 2 each misses it by tol, and the count passing 2 stops at epoch 4
    assert clf.n_iter_ == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLPClassifier((8,), random_state=0).partial_fit(X, labels, classes=[0, 1, 2])  # no warning


def test_verbose_prints_sklearn_lines(capsys):
    rng = np.random.default_rng(12)
    X, labels = _blobs(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((4,), max_iter=2, verbose=True, random_state=0).fit(X, labels)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Iteration 1, loss = ")


# ---------------------------------------------------------------------- meta-estimators and pandas
def test_pipeline_gridsearch_cross_val_with_dataframes():
    rng = np.random.default_rng(13)
    X, labels = _blobs(rng, n=300)
    df = pd.DataFrame(X * [100.0, 0.01], columns=["height", "weight"])  # badly scaled: the scaler matters
    y = pd.Series(np.array(["a", "b", "c"])[labels])
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, learning_rate_init=0.01, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                                 "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(df, y)
        scores = cross_val_score(MLPClassifier((16,), max_iter=60, learning_rate_init=0.01, random_state=0),
                                 StandardScaler().fit_transform(df), y, cv=3)  # fmt: skip
    assert search.best_score_ > 0.9 and scores.mean() > 0.9
    mlp = search.best_estimator_[-1]
    assert mlp.n_features_in_ == 2
    assert search.best_estimator_[0].feature_names_in_.tolist() == ["height", "weight"]
    assert set(search.predict(df.iloc[:10])) <= {"a", "b", "c"}
    # a DataFrame fitted directly records its column names, and predict checks them
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(df / df.std(), pd.Series(X[:, 0]))
    assert reg.feature_names_in_.tolist() == ["height", "weight"]
    with pytest.raises(ValueError, match="feature names"):
        reg.predict(df.rename(columns={"height": "h"}))


# ---------------------------------------------------------------------- pickling and weights
def test_pickle_round_trip_and_live_coefs():
    rng = np.random.default_rng(14)
    X, labels = _blobs(rng)
    clf = MLPClassifier((8,), max_iter=50, learning_rate_init=0.02, tol=0.01, random_state=0).fit(X, labels)
    copy = pickle.loads(pickle.dumps(clf))
    assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    for a, b in zip(_params(copy), _params(clf)):
        assert_array_equal(a, b)
    # the copy keeps training, and its coefs_ follow
    before = [p.copy() for p in _params(copy)]
    copy.partial_fit(X, labels)
    assert all(not np.array_equal(a, b) for a, b in zip(before, _params(copy)))
    # coefs_ edited in place or reassigned, as scikit-learn users do, drive predict
    copy.coefs_[-1][:] = 0.0
    copy.intercepts_[-1][:] = [0.0, 5.0, 0.0]
    assert (copy.predict(X) == 1).all()
    copy.intercepts_ = [b.copy() for b in copy.intercepts_]
    copy.intercepts_[-1][:] = [5.0, 0.0, 0.0]
    assert (copy.predict(X) == 0).all()


def test_all_threads_reproducible_and_close_to_one_thread():
    """On fastbp's full thread pool a seed still fixes the fit, and it agrees with the
    one-thread fit to rounding (partial gradients summed in another order)."""
    import numba

    rng = np.random.default_rng(17)
    X, labels = _blobs(rng, n=400)
    kw = dict(hidden_layer_sizes=(32,), batch_size=128, max_iter=5, dtype="float64", random_state=0)
    one = MLPClassifier(**kw).fit(X, labels)
    fb.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    a, b = MLPClassifier(**kw).fit(X, labels), MLPClassifier(**kw).fit(X, labels)
    for pa, pb, p1 in zip(_params(a), _params(b), _params(one)):
        assert_array_equal(pa, pb)
        assert_allclose(pa, p1, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------- parameter errors
@pytest.mark.parametrize(
    "params, exc, match",
    [
        (dict(solver="newton"), ValueError, r"'solver' parameter of MLPClassifier must be a str among"),
        (dict(alpha=-1.0), ValueError, r"'alpha' parameter of MLPClassifier must be a float in the range"),
        (dict(alpha="big"), TypeError, r"'alpha' parameter"),
        (dict(activation="softmax"), ValueError, r"'activation' parameter"),
        (dict(hidden_layer_sizes=(10, 0)), ValueError, r"hidden_layer_sizes must be > 0"),
        (dict(hidden_layer_sizes="10"), TypeError, r"'hidden_layer_sizes' parameter"),
        (dict(batch_size=0), ValueError, r"'batch_size' parameter"),
        (dict(batch_size="all"), TypeError, r"'batch_size' parameter"),
        (dict(learning_rate="cosine"), ValueError, r"'learning_rate' parameter"),
        (dict(learning_rate_init=0.0), ValueError, r"'learning_rate_init' parameter"),
        (dict(max_iter=0), ValueError, r"'max_iter' parameter"),
        (dict(momentum=1.5), ValueError, r"'momentum' parameter"),
        (dict(shuffle="yes"), TypeError, r"'shuffle' parameter"),
        (dict(validation_fraction=1.0), ValueError, r"'validation_fraction' parameter"),
        (dict(beta_2=1.0), ValueError, r"'beta_2' parameter"),
        (dict(epsilon=0.0), ValueError, r"'epsilon' parameter"),
        (dict(n_iter_no_change=0), ValueError, r"'n_iter_no_change' parameter"),
        (dict(dtype="float16"), ValueError, r"'dtype' parameter"),
        (dict(dropout=1.0), ValueError, r"'dropout' parameter"),
    ],
)
def test_parameter_errors_name_the_parameter(params, exc, match):
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    clf = MLPClassifier(**params)  # __init__ only stores
    with pytest.raises(exc, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


def test_unusual_but_valid_parameters():
    rng = np.random.default_rng(15)
    X, labels = _blobs(rng, n=60)
    clf = MLPClassifier(hidden_layer_sizes=(), n_iter_no_change=np.inf, max_iter=5, batch_size=1000,
                        max_fun=1, random_state=np.random.RandomState(0))  # fmt: skip
    with pytest.warns(UserWarning, match="batch_size"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, labels)
    assert clf.n_layers_ == 2 and clf.coefs_[0].shape == (2, 3) and clf.n_iter_ == 5
    reg = MLPRegressor(hidden_layer_sizes=3, solver="sgd", momentum=0.0, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, labels.astype(float))
    assert [c.shape for c in reg.coefs_] == [(2, 3), (3, 1)]
