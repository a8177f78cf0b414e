"""ferbatch: batch facial emotion recognition over collections of videos.

Video -> frames -> detections -> crops -> classifications -> rows -> Parquet. See README.md.
Importing ferbatch never imports TensorRT, pycuda or Ray.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
