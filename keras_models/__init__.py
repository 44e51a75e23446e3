"""Functional-API model builders. keras layers and keras.ops only: they run on every backend.

Importing the package imports every module, so each custom layer, loss, metric and model class is
registered with Keras (package "keras_baselines") and a saved `model.keras` loads with a plain
`keras.saving.load_model(path)` on either backend.
"""

from keras_models import autoencoder  # noqa: F401
from keras_models import classifier  # noqa: F401
from keras_models import detector  # noqa: F401
from keras_models import direction  # noqa: F401
from keras_models import gan  # noqa: F401
from keras_models import metrics  # noqa: F401
from keras_models import pretrained  # noqa: F401
from keras_models import regressor  # noqa: F401
from keras_models import qa  # noqa: F401
from keras_models import recommender  # noqa: F401
from keras_models import seq2seq  # noqa: F401
from keras_models import series  # noqa: F401
from keras_models import siamese  # noqa: F401
from keras_models import text  # noqa: F401
from keras_models import tracker  # noqa: F401
from keras_models import unet  # noqa: F401
from keras_models import vae  # noqa: F401
from keras_models import xla  # noqa: F401
