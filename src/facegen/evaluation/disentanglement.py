"""Disentanglement of a latent code against ground-truth factors: MIG, DCI and SAP.

Needs data with known generative factors (the synthetic faces' ``factors.csv``; real CelebA has
none, and evaluation then skips these with a note). Factors here are continuous, so:

* MIG (Chen et al. 2018): codes and factors discretised into ``bins`` equal-width histogram bins
  (as in disentanglement_lib), mutual information by scikit-learn; per factor, the gap between the
  two most informative code dimensions over the factor's entropy; mean over factors.
* DCI (Eastwood & Williams 2018): per factor, a tree ensemble regresses the factor on the code;
  its feature importances form the importance matrix R (dims x factors). Disentanglement =
  importance-weighted 1 - entropy of each dimension's row; completeness = 1 - entropy of each
  factor's column; informativeness = held-out R² (clipped at 0), so all three are "higher is
  better" in [0, 1]. Extremely randomised trees rather than the paper's random forest / boosting:
  on 2 cores a forest took ~30 s per family (the whole evaluate budget), a sqrt-features forest
  spread importance onto noise dimensions even for a perfect code, and the paper's Lasso variant
  calls a pure-noise code "disentangled" (its few surviving coefficients each hit one factor).
  Extra trees give D = C = 1 for a perfect code and ~0 for noise, in ~1-3 s.
* SAP (Kumar et al. 2018), continuous-factor form: R² of a 1-D linear fit of each factor on each
  dimension (squared correlation); per factor, gap between the top two dimensions; mean.

MIG, SAP and DCI's importances are fitted on the train codes; DCI's informativeness is scored on
the test codes.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import entropy
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.metrics import mutual_info_score, r2_score

TREES, DEPTH = 20, 8  # enough for stable importances on a few thousand codes; more only costs time


def discretize(x: np.ndarray, bins: int) -> np.ndarray:
    """Per column, equal-width histogram bin indices (columns with <= bins values keep their levels)."""
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        col = x[:, j]
        levels = np.unique(col)
        if len(levels) <= bins:
            out[:, j] = np.searchsorted(levels, col)
        else:
            out[:, j] = np.digitize(col, np.histogram_bin_edges(col, bins)[1:-1])
    return out


def mutual_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, K) mutual information (nats) between discrete code columns and discrete factor columns."""
    return np.array([[mutual_info_score(factors[:, k], codes[:, d]) for k in range(factors.shape[1])]
                     for d in range(codes.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int) -> float:
    c, f = discretize(codes, bins), discretize(factors, bins)
    mi = mutual_information(c, f)
    h = np.array([mutual_info_score(f[:, k], f[:, k]) for k in range(f.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) if len(top) > 1 else top[0]
    return float(np.mean(gaps[h > 0] / h[h > 0]))


def sap(codes: np.ndarray, factors: np.ndarray) -> float:
    # float64: a float32 product's last digits follow BLAS's summation order, which is not fixed
    # between runs of the same code (the committed SAP moved in its 7th digit between two repros)
    c = codes.astype(np.float64) - codes.mean(0, dtype=np.float64)
    f = factors.astype(np.float64) - factors.mean(0, dtype=np.float64)
    cov = c.T @ f / len(c)
    var = np.outer(c.var(0), f.var(0))
    score = np.divide(cov ** 2, var, out=np.zeros_like(cov), where=var > 0)  # R² of 1-D linear fits
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1])) if len(top) > 1 else float(np.mean(top[0]))


def dci(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray,
        seed: int) -> dict[str, float]:
    n_dims, n_factors = train_codes.shape[1], train_factors.shape[1]
    importance = np.zeros((n_dims, n_factors))
    informativeness = []
    for k in range(n_factors):
        trees = ExtraTreesRegressor(n_estimators=TREES, max_depth=DEPTH, random_state=seed)
        trees.fit(train_codes, train_factors[:, k])
        importance[:, k] = trees.feature_importances_
        informativeness.append(max(0.0, r2_score(test_factors[:, k], trees.predict(test_codes))))
    total = importance.sum()
    row_sums = importance.sum(1)
    used = row_sums > 0
    # Single-factor or single-dim cases: entropy base 1 is undefined and the answer is trivially 1.
    d_per_dim = 1 - entropy(importance[used].T, base=n_factors) if n_factors > 1 else np.ones(used.sum())
    c_per_factor = 1 - entropy(importance, base=n_dims) if n_dims > 1 else np.ones(n_factors)
    return {
        "dci_disentanglement": float(np.sum(d_per_dim * row_sums[used] / total)) if total > 0 else 0.0,
        "dci_completeness": float(np.mean(np.nan_to_num(c_per_factor))),
        "dci_informativeness": float(np.mean(informativeness)),
    }


def disentanglement_scores(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray,
                           test_factors: np.ndarray, bins: int, seed: int) -> dict[str, float]:
    """MIG, SAP and DCI of a code (rows = images) against ground-truth factors."""
    return {"mig": mig(train_codes, train_factors, bins), "sap": sap(train_codes, train_factors),
            **dci(train_codes, train_factors, test_codes, test_factors, seed)}
