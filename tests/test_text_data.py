"""The generated text-classification data set (runtime/data.py: text_classifier)."""

import numpy as np

from runtime.data import TEXT_CLASSES, TEXT_LENGTH, TEXT_VOCAB, load_data


def test_text_classifier_is_seeded_padded_and_balanced() -> None:
    a = load_data("text_classifier", seed=3)
    b = load_data("text_classifier", seed=3)
    c = load_data("text_classifier", seed=4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (10000, TEXT_LENGTH) and a.x_train.dtype == np.int32
    assert a.x_test.shape == (2000, TEXT_LENGTH) and a.y_train.dtype == np.int32
    assert a.x_train.min() >= 0 and a.x_train.max() < TEXT_VOCAB
    lengths = (a.x_train != 0).sum(axis=1)
    assert lengths.min() >= 8 and lengths.max() <= TEXT_LENGTH
    # padding only at the end
    padded = a.x_train == 0
    assert not (padded[:, :-1] & ~padded[:, 1:]).any()
    counts = np.bincount(a.y_train, minlength=TEXT_CLASSES)
    assert counts.min() > 0.2 * len(a.y_train)


def test_text_classifier_is_learnable_from_a_bag_of_words_but_not_from_one_token() -> None:
    d = load_data("text_classifier", seed=0)

    def bag(x: np.ndarray) -> np.ndarray:
        counts = np.zeros((len(x), TEXT_VOCAB))
        np.add.at(counts, (np.repeat(np.arange(len(x)), x.shape[1]), x.ravel()), 1.0)
        counts[:, 0] = 0.0
        return counts

    def nearest_centroid_accuracy(columns: slice) -> float:
        train = bag(d.x_train[:, columns])
        centroids = np.stack([train[d.y_train == k].mean(axis=0) for k in range(TEXT_CLASSES)])
        centroids -= centroids.mean(axis=0)
        return float((np.argmax(bag(d.x_test[:, columns]) @ centroids.T, axis=1) == d.y_test).mean())

    assert nearest_centroid_accuracy(slice(None)) > 0.9
    assert nearest_centroid_accuracy(slice(0, 1)) < 0.6
