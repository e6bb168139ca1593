from confluent_kafka.admin import AdminClient
from reverify.schemas.topics import TOPICS
from reverify.streams.embedded import EmbeddedBroker, free_port, port_is_open
from reverify.streams.settings import Settings
from reverify.streams.topics import ensure_topics


def test_broker_starts_only_when_port_is_free_and_stops_by_pid(broker):
    host, port = broker.split(":")
    # something already listens there: a second broker must not start, nor stop the first
    second = EmbeddedBroker(host=host, port=int(port))
    assert second.start() is False
    second.stop()
    assert port_is_open(host, int(port))

    own = EmbeddedBroker(port=free_port())
    assert own.start() is True
    pid = own.process.pid
    own.stop()
    assert not port_is_open("127.0.0.1", own.port)
    assert own.process is None and pid > 0


def test_every_design_topic_is_created_with_partitions_and_compaction(settings: Settings):
    md = AdminClient(settings.kafka_config()).list_topics(timeout=10)
    for name in TOPICS:
        topic = md.topics[settings.topic(name)]
        assert len(topic.partitions) == settings.partitions
    # ensuring again creates nothing
    assert ensure_topics(AdminClient(settings.kafka_config()), settings.topic_prefix, settings.partitions) == []
