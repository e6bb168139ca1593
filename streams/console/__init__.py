"""The web console: fleet, agents, drift, alerts and proposals as pages, served by ``reverify up`` and
``reverify console`` (docs/console.md).

Modules: :mod:`.auth` (loopback or token), :mod:`.charts` (SVG drawn on the server), :mod:`.html` (escaped by
default), :mod:`.pages` (a page from its data), :mod:`.server` (routes, reading, actions).
"""
