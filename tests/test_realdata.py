"""The original files: hashes, shapes and counts. Skipped only where MNISTLAB_TEST_DATA is
unset outside CI (conftest makes a missing setting in CI a failure)."""

import pytest

from mnistlab import data, datasets

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_files_match_their_sha256(real_data, name):
    spec = datasets.get_spec(name)
    for file in spec.files.values():
        assert data.sha256_of(real_data / name / file.name) == file.sha256


@pytest.mark.realdata
def test_mnist_shapes_and_class_counts(mnist):
    assert tuple(mnist.train.images.shape) == (60000, 28, 28)
    assert tuple(mnist.test.images.shape) == (10000, 28, 28)
    assert data.class_counts(mnist.train) == MNIST_TRAIN_COUNTS
    assert data.class_counts(mnist.test) == MNIST_TEST_COUNTS


@pytest.mark.realdata
def test_fashion_mnist_shapes_and_class_counts(real_data):
    dataset = data.load("fashion-mnist", real_data, download_missing=False)
    assert tuple(dataset.train.images.shape) == (60000, 28, 28)
    assert data.class_counts(dataset.train) == [6000] * 10
    assert data.class_counts(dataset.test) == [1000] * 10
    assert dataset.classes[9] == "Ankle boot"
