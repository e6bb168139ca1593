"""reverify: keeps fleets of AI agents honest while they learn.

The SDK an agent needs is importable from here; the parts install under this
one namespace (``reverify.schemas``, ``reverify.streams``,
``reverify.processors``, ``reverify.sinks``) so that nothing of ours shadows,
or is shadowed by, an application's own ``schemas`` or ``streams`` package.

The SDK is imported on first use, so that ``import reverify.processors``
(pure Python) does not load the Kafka client.

>>> from reverify import AgentEvents
>>> AgentEvents.__module__
'reverify.streams.client'
"""

from __future__ import annotations

from typing import Any

__all__ = ["AgentEvents", "AlertSubscriber", "VariantRouter"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reverify.streams import client

        return getattr(client, name)
    raise AttributeError(f"module 'reverify' has no attribute {name!r}")
