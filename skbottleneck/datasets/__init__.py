"""Image folders: list a labelled folder or loose images, or build a small folder of real photos.

:func:`load_image_folder` reads the class-per-subfolder layout that Keras'
``flow_from_directory`` and ``image_dataset_from_directory`` use::

    root/
        cat/001.jpg
        cat/more/002.png
        dog/003.jpg

:func:`load_image_table` reads the paths and labels of a CSV or Parquet
table (or a DataFrame); :func:`load_tar_shards` lists tar shards in the
WebDataset layout; folders, tables and shards may live in object storage
(``s3://``, ``gs://``, ...; see :mod:`skbottleneck.remote`).

:func:`list_images` finds the images named on a command line: files,
folders searched recursively, or glob patterns.

:func:`make_photo_folder` writes such a folder with patches cut from the
colour photographs bundled with scikit-image, for demos, tests and
benchmarks that need real photo files without a download.

:func:`make_photo_regions_split` writes a train and a test folder whose
patches come from disjoint regions of each photo, for a held-out score that
means something.
"""

from ._folders import IMAGE_EXTENSIONS, list_images, load_image_folder
from ._shards import LABEL_EXTENSIONS, load_tar_shards
from ._tables import TABLE_EXTENSIONS, is_table, load_image_table
from ._photos import PHOTO_NAMES, _load_photo, make_photo_folder, make_photo_regions_split

__all__ = ["IMAGE_EXTENSIONS", "LABEL_EXTENSIONS", "PHOTO_NAMES", "TABLE_EXTENSIONS", "is_table",
           "list_images", "load_image_folder", "load_image_table", "load_tar_shards",
           "make_photo_folder",
           "make_photo_regions_split"]
