"""Task modules register themselves on import; add a new task by adding its module here."""

from tasks import autoencoder, gan, vae  # noqa: F401
from tasks import classification  # noqa: F401
from tasks import detection  # noqa: F401
from tasks import forecasting  # noqa: F401
from tasks import image_regression  # noqa: F401
from tasks import question_answering  # noqa: F401
from tasks import recommendation  # noqa: F401
from tasks import segmentation  # noqa: F401
from tasks import seq2seq  # noqa: F401  (translation, summarization)
from tasks import text_classification  # noqa: F401
from tasks import timeseries_classification  # noqa: F401
from tasks import tracking  # noqa: F401
