import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from pipeline.metrics import classification_metrics, minority_classes, summarise_runs


def test_binary_metrics_match_scikit_learn():
    labels = np.array([0, 0, 0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(labels, proba, ("normal", "nodule"))
    pred = proba.argmax(1)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred)) == pytest.approx(0.625)
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, proba[:, 1]))
    assert m["recall_nodule"] == 0.5 and m["recall_normal"] == 0.75


def test_multiclass_auroc_is_one_vs_rest():
    labels = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[[0, 1, 2, 1, 1, 2]] * 0.8 + 0.2 / 3
    m = classification_metrics(labels, proba, ("a", "b", "c"))
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, proba, multi_class="ovr"))


def test_summary_and_minorities():
    s = summarise_runs([{"x": 1.0}, {"x": 3.0}])
    assert s == {"x": 2.0, "x_std": pytest.approx(np.sqrt(2))}
    assert minority_classes({"a": 10, "b": 3, "c": 10}) == ["b"]
