"""Task modules register themselves on import; add a new task by adding its module here."""

from tasks import classification  # noqa: F401
from tasks import detection  # noqa: F401
from tasks import segmentation  # noqa: F401
from tasks import text_classification  # noqa: F401
from tasks import autoencoder, gan, vae  # noqa: F401
from tasks import question_answering  # noqa: F401
