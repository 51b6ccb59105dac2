"""genlab: compare how convolutional networks generalize."""
import os

# albumentations checks PyPI for a newer version at import; runs must not touch the network for that.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
