"""The worker's Faust wiring: the reverify:// consumer transport, the security settings passed to Faust, and the
agent states it writes to the changelog."""

from __future__ import annotations

import json

import faust
import pytest
from faust.transport import drivers
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.streams import faust_transport
from reverify.streams.app import PipelineShell, WorkerSettings, create_app, faust_credentials
from reverify.streams.settings import Settings


def test_reverify_scheme_is_the_quick_fetch_transport():
    transport = drivers.by_url("reverify://localhost:9092")
    assert transport is faust_transport.Transport
    assert transport.Consumer is faust_transport.Consumer


def test_create_app_consumes_through_it_with_the_configured_wait():
    settings = Settings.load(
        env={"REVERIFY_KAFKA": "127.0.0.1:1", "REVERIFY_WORKER__FETCH_MAX_WAIT_MS": "40"}, path=None
    )
    app = create_app(settings)
    assert str(app.conf.broker_consumer[0]).startswith("reverify://")
    assert str(app.conf.broker_producer[0]).startswith("kafka://")
    assert faust_transport.FETCH_MAX_WAIT_MS == 40
    faust_transport.FETCH_MAX_WAIT_MS = WorkerSettings().fetch_max_wait_ms


def test_security_settings_reach_faust():
    plain = Settings.load(env={}, path=None)
    assert faust_credentials(plain) is None
    sasl = Settings.load(
        env={
            "REVERIFY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "REVERIFY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "REVERIFY_KAFKA_SASL_USERNAME": "svc",
            "REVERIFY_KAFKA_SASL_PASSWORD": "pw",
        },
        path=None,
    )
    creds = faust_credentials(sasl)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", "pw", "SCRAM-SHA-512")
    assert creds.ssl_context is not None
    tls = faust_credentials(Settings.load(env={"REVERIFY_KAFKA_SECURITY_PROTOCOL": "SSL"}, path=None))
    assert isinstance(tls, faust.SSLCredentials)


def test_a_state_past_the_changelog_limit_names_the_agent_and_what_to_lower():
    pipeline = AgentPipeline("shop", PipelineConfig())
    for i in range(200):
        outcome = {"event_id": f"o{i}", "ts": i, "agent_name": "shop", "task_type": "buy", "variant_id": "v1",
                   "awaiting_feedback": True, "features": {}, "attributes": {}}  # fmt: skip
        pipeline.on_event("AgentOutcome", outcome, (0, i))
    raw = PipelineShell.encode_state(pipeline)
    assert json.loads(raw)["agent_name"] == "shop"
    with pytest.raises(
        RuntimeError, match=r"agent 'shop'.* waits for 200 outcomes' feedback: lower feedback\.max_pend"
    ):
        PipelineShell.encode_state(pipeline, limit=len(raw) + 4000)
    assert PipelineShell.encode_state(pipeline, limit=len(raw) + 4096) == raw
