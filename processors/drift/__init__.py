"""Drift of every monitored series against its baseline (a package: the modules are being split out of ``looks``)."""

from reverify.processors.drift.looks import *  # noqa: F403
from reverify.processors.drift.looks import _SEARCH_TOGETHER_FROM, __all__  # noqa: F401
