"""Detectors: one box type and the back ends that turn frames into boxes."""
