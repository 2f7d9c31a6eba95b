"""Fails at import time: bunicorn must print this traceback and exit 1."""


def _helper_that_fails():
    raise RuntimeError("broken-app-import-marker")


_helper_that_fails()
