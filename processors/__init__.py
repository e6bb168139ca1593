"""The decisions, as pure Python: no Kafka, no ClickHouse, no clocks they are not given.

Each processor takes decoded events (dicts shaped by ``schemas/*.avsc``, with
``ts`` in epoch milliseconds), returns the :class:`~processors.base.Emission`
objects to publish, and can be serialised with ``to_dict`` / ``from_dict`` so
the stream shell can keep it in a Faust table.
"""
