"""Two tiny TFDS datasets built by real `GeneratorBasedBuilder`s, without network.

Importing this module registers `kb_tiny_images` and `kb_tiny_texts` with TFDS. Preparing them
(`download_and_prepare`) runs the same builder path as `tfds:cifar10` minus the download, so the
tests see what a fresh install sees. Each has a train and a test split and no validation split.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NUM_TRAIN, NUM_TEST = 40, 12
IMAGE_SHAPE = (12, 12, 3)
IMAGE_CLASSES = ("dark", "light")
TEXT_CLASSES = ("neg", "pos")
_WORDS = {0: ("bad", "dull", "awful", "boring"), 1: ("good", "great", "lovely", "fun")}


def _labels(split: str, n: int) -> np.ndarray:
    return np.random.default_rng(len(split)).integers(0, 2, n)


class KbTinyImages(tfds.core.GeneratorBasedBuilder):
    """Dark or light 12x12 RGB images."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=IMAGE_SHAPE),
            "label": tfds.features.ClassLabel(names=IMAGE_CLASSES),
        }), supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train", NUM_TRAIN),
                "test": self._generate_examples("test", NUM_TEST)}

    def _generate_examples(self, split, n):
        rng = np.random.default_rng(len(split) + 100)
        for i, label in enumerate(_labels(split, n)):
            base = 40 + 160 * int(label)
            image = np.clip(base + rng.integers(-30, 30, IMAGE_SHAPE), 0, 255).astype(np.uint8)
            yield f"{split}-{i}", {"image": image, "label": int(label)}


class KbTinyTexts(tfds.core.GeneratorBasedBuilder):
    """Three-word reviews, negative or positive."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=TEXT_CLASSES),
        }), supervised_keys=("text", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train", NUM_TRAIN),
                "test": self._generate_examples("test", NUM_TEST)}

    def _generate_examples(self, split, n):
        rng = np.random.default_rng(len(split) + 200)
        for i, label in enumerate(_labels(split, n)):
            words = rng.choice(_WORDS[int(label)], 3)
            yield f"{split}-{i}", {"text": "the film was " + " ".join(words), "label": int(label)}


def prepare(data_dir) -> None:
    """Prepare both datasets into `data_dir` (what `tfds build` would do)."""
    for cls in (KbTinyImages, KbTinyTexts):
        cls(data_dir=str(data_dir)).download_and_prepare()
