"""Placeholder until the privacy service lands."""


def register(app, services) -> None:
    return None
