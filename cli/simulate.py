"""Placeholder until implemented."""


def command():
    raise NotImplementedError
