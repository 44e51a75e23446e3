"""tf.data sources and transforms: the only package that uses TensorFlow ops."""

from pipelines.data import Data, DataInfo, DataSpec, InputSpec, parse_data_spec, split_counts  # noqa: F401
