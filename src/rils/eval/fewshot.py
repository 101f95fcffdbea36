"""Low-shot classification (paper Sec. 4.3, Table 4).

For each shot count k (1, 2, 5, 10) and seed, k labelled images per class are drawn from the train
split; a logistic regression (scikit-learn, L2 penalty, inverse strength `C`) is fitted on their
frozen, L2-normalised features and scored on the whole test split. We report mean and standard
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
from .protocol import Protocol

DEFAULT_SHOTS = (1, 2, 5, 10)


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


def logistic_regression_accuracy(train_x, train_y, test_x, test_y, *, C: float = 1.0,
                                 max_iter: int = 1000) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == np.asarray(test_y)).mean())


def fewshot_draws(train_y, shots=DEFAULT_SHOTS, seeds: int = 3) -> dict[tuple[int, int], np.ndarray]:
    """{(shots, seed): train indices} for every draw."""
    return {(k, seed): sample_fewshot(train_y, k, seed) for k in shots for seed in range(seeds)}


def fewshot(train_x, train_y, test_x, test_y, *, shots=DEFAULT_SHOTS, seeds: int = 3,
            C: float = 1.0, max_iter: int = 1000, train_index=None) -> dict:
    """Mean/std top-1 over `seeds` draws for each shot count, on given features (normalised here).

    `train_index[i]` is the train-split index of row i of `train_x` when only the drawn samples
    were encoded; by default `train_x` holds the whole split.
    """
    train_x = F.normalize(torch.as_tensor(train_x).float(), dim=-1).numpy()
    test_x = F.normalize(torch.as_tensor(test_x).float(), dim=-1).numpy()
    train_y = np.asarray(train_y)
    row = None if train_index is None else {int(j): r for r, j in enumerate(train_index)}
    metrics, runs = {}, {}
    for k in shots:
        accs = []
        for seed in range(seeds):
            idx = sample_fewshot(train_y, k, seed)
            rows = idx if row is None else np.array([row[int(j)] for j in idx])
            accs.append(logistic_regression_accuracy(train_x[rows], train_y[idx], test_x, test_y,
                                                     C=C, max_iter=max_iter))
        metrics[f"{k}-shot_mean"] = float(np.mean(accs))
        metrics[f"{k}-shot_std"] = float(np.std(accs))
        runs[f"{k}-shot"] = accs
    return {"metrics": metrics, "runs": runs}


def evaluate_fewshot(model, transform, train_dataset: EvalDataset, test_dataset: EvalDataset, *,
                     shots=DEFAULT_SHOTS, seeds: int = 3, C: float = 1.0, max_iter: int = 1000,
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
    out.update(feature=feature_info(kind), num_test=len(test_x), shots=list(shots), seeds=seeds, C=C)
    return out


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    return evaluate_fewshot(loaded.model, loaded.transform, train, test, device=device, precision=precision,
                            **options, **extract)


def _add_arguments(g) -> None:
    g.add_argument("--shots", type=int, nargs="+", default=list(DEFAULT_SHOTS), help="labelled images per class")
    g.add_argument("--seeds", type=int, default=3, help="random draws of the few-shot set per shot count")
    g.add_argument("--C", dest="C", type=float, default=1.0, help="inverse L2 strength")
    g.add_argument("--max-iter", type=int, default=1000, help="logistic regression iterations")


PROTOCOL = Protocol(name="fewshot", help="logistic regression on 1/2/5/10 images per class (paper Table 4)",
                    run=_run, add_arguments=_add_arguments, needs_train=True)
