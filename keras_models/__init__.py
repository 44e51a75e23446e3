"""Functional-API model builders. keras layers and keras.ops only: they run on every backend.

Importing the package imports every module, so each custom layer, loss, metric and model class is
registered with Keras (package "keras_baselines") and a saved `model.keras` loads with a plain
`keras.saving.load_model(path)` on either backend.
"""

from keras_models import autoencoder, classifier, detector, direction, gan, metrics, qa, text, unet, vae  # noqa: F401
