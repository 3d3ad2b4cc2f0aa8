"""Dataset versions: images, labels, augmentations and exports built from reviewed tasks."""
