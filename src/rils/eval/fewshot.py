"""Low-shot classification (paper Sec. 4.3, Table 4).

For each shot count k (1, 2, 5, 10) and seed, k labelled images per class are drawn from the train
split; a logistic regression (scikit-learn, L2 penalty, inverse strength `C`) is fitted on their
frozen features and scored on the whole test split. Features are prepared as MSN's low-shot
evaluation does (cyanure's `preprocess(X, centering=True, normalize=True, columns=False)`): each
feature vector is centred (its own mean over dimensions subtracted) and then L2-normalised.

Regularisation: MSN fixes λ = 0.00025 / n, i.e. scikit-learn's C = 1 / (n λ) = 4,000. Here C is
swept over `DEFAULT_CS` on a held-out part of each few-shot train draw (about a fifth of the shots
of every class, at least one), best held-out accuracy then held-out log-loss; the winner is refitted
on the whole draw. One shot leaves nothing to hold out, so 1-shot uses MSN's C = 4,000. The test
split never picks C; the chosen Cs are in the result (`C_chosen`). We report mean and standard
deviation over seeds (numpy's population std) of the top-1 accuracy, as fractions in [0, 1].
Features are those of the linear probe (mean of patch tokens after the final norm, or
`encode_image` for models without `forward_features`). Only the train images some draw uses are
encoded (a few per class, not the whole split), once for all shots and seeds.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import EvalDataset, Subset, aligned_labels
from .features import image_features
from .linear import feature_info
from .models import fingerprint_model
from .protocol import DEFAULT_CS, DEFAULT_SHOTS, MSN_C


def msn_preprocess(x) -> np.ndarray:
    """Centre each row (subtract its mean over dimensions) and L2-normalise it, as MSN via cyanure."""
    x = torch.as_tensor(x).float()
    return F.normalize(x - x.mean(dim=-1, keepdim=True), dim=-1).numpy()


def sample_fewshot(labels, shots: int, seed: int) -> np.ndarray:
    """Indices of `shots` samples per class, drawn without replacement; sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise ValueError(f"class {c} has {len(pool)} training samples, fewer than {shots} shots")
        picked.append(rng.choice(pool, shots, replace=False))
    return np.sort(np.concatenate(picked))


def logistic_regression_accuracy(train_x, train_y, test_x, test_y, *, C: float = MSN_C,
                                 max_iter: int = 1000) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == np.asarray(test_y)).mean())


def choose_C(x, y, Cs, *, seed: int = 0, max_iter: int = 1000) -> float:
    """The C of `Cs` that does best on a held-out part of (x, y): about a fifth of every class's
    samples, at least one, held out; ties broken by held-out log-loss. A single C, or a class with
    one sample (nothing to hold out), returns the single C or MSN's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    Cs = list(Cs)
    y = np.asarray(y)
    if len(Cs) == 1:
        return float(Cs[0])
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        return MSN_C if MSN_C in Cs else float(Cs[len(Cs) // 2])
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.choice(np.flatnonzero(y == c), max(1, int(round(0.2 * n))), replace=False)
                           for c, n in zip(classes, counts)])
    fit = np.setdiff1d(np.arange(len(y)), held)
    scores = []
    for C in Cs:
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(x[fit], y[fit])
        acc = float((clf.predict(x[held]) == y[held]).mean())
        scores.append((acc, -log_loss(y[held], clf.predict_proba(x[held]), labels=clf.classes_), -abs(np.log(C / MSN_C))))
    return float(Cs[max(range(len(Cs)), key=lambda i: scores[i])])


def fewshot_draws(train_y, shots=DEFAULT_SHOTS, seeds: int = 3) -> dict[tuple[int, int], np.ndarray]:
    """{(shots, seed): train indices} for every draw."""
    return {(k, seed): sample_fewshot(train_y, k, seed) for k in shots for seed in range(seeds)}


def fewshot(train_x, train_y, test_x, test_y, *, shots=DEFAULT_SHOTS, seeds: int = 3,
            C=DEFAULT_CS, max_iter: int = 1000, train_index=None) -> dict:
    """Mean/std top-1 over `seeds` draws for each shot count, on given features (centred and
    normalised here). `C`: one value, or several swept on held-out shots of each draw (see top).

    `train_index[i]` is the train-split index of row i of `train_x` when only the drawn samples
    were encoded; by default `train_x` holds the whole split.
    """
    Cs = [float(C)] if np.isscalar(C) else [float(c) for c in C]
    train_x = msn_preprocess(train_x)
    test_x = msn_preprocess(test_x)
    train_y = np.asarray(train_y)
    row = None if train_index is None else {int(j): r for r, j in enumerate(train_index)}
    metrics, runs, chosen = {}, {}, {}
    for k in shots:
        accs, cs = [], []
        for seed in range(seeds):
            idx = sample_fewshot(train_y, k, seed)
            rows = idx if row is None else np.array([row[int(j)] for j in idx])
            c = choose_C(train_x[rows], train_y[idx], Cs, seed=seed, max_iter=max_iter)
            cs.append(c)
            accs.append(logistic_regression_accuracy(train_x[rows], train_y[idx], test_x, test_y,
                                                     C=c, max_iter=max_iter))
        metrics[f"{k}-shot_mean"] = float(np.mean(accs))
        metrics[f"{k}-shot_std"] = float(np.std(accs))
        runs[f"{k}-shot"] = accs
        chosen[f"{k}-shot"] = cs
    return {"metrics": metrics, "runs": runs, "C_chosen": chosen}


def evaluate_fewshot(model, transform, train_dataset: EvalDataset, test_dataset: EvalDataset, *,
                     shots=DEFAULT_SHOTS, seeds: int = 3, C=DEFAULT_CS, max_iter: int = 1000,
                     device=None, precision: str = "auto", **extract) -> dict:
    """Low-shot logistic regression on frozen features; `extract`: see `features.image_features`."""
    train_y = train_dataset.require_labels()
    test_y = aligned_labels(test_dataset, train_dataset.classnames)
    if extract.get("use_cache", True) and not extract.get("model_id"):
        extract["model_id"] = fingerprint_model(model)
    used = np.unique(np.concatenate(list(fewshot_draws(train_y, shots, seeds).values())))
    train_x, kind = image_features(model, Subset(train_dataset, used), transform, kind="pooled",
                                   device=device, precision=precision, **extract)
    test_x, _ = image_features(model, test_dataset, transform, kind="pooled", device=device,
                               precision=precision, **extract)
    out = fewshot(train_x, train_y, test_x, test_y, shots=shots, seeds=seeds, C=C,
                  max_iter=max_iter, train_index=used)
    out.update(feature=feature_info(kind), num_test=len(test_x), shots=list(shots), seeds=seeds,
               C=[float(C)] if np.isscalar(C) else [float(c) for c in C],
               preprocess="per-sample centring then L2 normalisation (MSN)")
    return out


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    return evaluate_fewshot(loaded.model, loaded.transform, train, test, device=device, precision=precision,
                            **options, **extract)
