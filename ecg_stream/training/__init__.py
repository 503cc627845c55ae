"""Offline, extra "train": dataset, augmentation, folds, training, calibration, card, export."""
