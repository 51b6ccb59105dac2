"""Data sets: readers (one file per format), the catalog, augmentation and the Lightning data module."""
