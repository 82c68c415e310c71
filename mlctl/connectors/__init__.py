"""Connectors to external systems: each an interface, an embedded default and the real client.

==================================== =============================================================
module                               what
==================================== =============================================================
:mod:`mlctl.connectors.prometheus`   :class:`PrometheusClient` (range queries), :class:`Poller`
:mod:`mlctl.connectors.alerts`       alert sinks: Alertmanager, webhook (also routes log records),
                                     Slack-style messages, a log file
:mod:`mlctl.connectors.kafka`        :class:`KafkaProducer`, :class:`KafkaConsumer`, topics
:mod:`mlctl.connectors.search`       a log index: SQLite FTS5 by default, OpenSearch by URL
:mod:`mlctl.connectors.docker`       the Docker engine API over its socket
==================================== =============================================================

Names are imported on first use; a missing optional extra is reported by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.connectors.alerts import Alert, AlertmanagerSink, AlertSink, LogSink, WebhookSink
    from mlctl.connectors.docker import docker_api
    from mlctl.connectors.kafka import KafkaConsumer, KafkaProducer, Message, committed_offsets, create_topic
    from mlctl.connectors.prometheus import Poller, PrometheusClient, Series
    from mlctl.connectors.search import OpenSearchIndex, SearchIndex, SqliteFtsIndex, make_index

_MODULES = {
    "mlctl.connectors.alerts": ["Alert", "AlertSink", "AlertmanagerSink", "WebhookSink", "LogSink"],
    "mlctl.connectors.docker": ["docker_api"],
    "mlctl.connectors.kafka": ["KafkaProducer", "KafkaConsumer", "Message", "create_topic", "committed_offsets"],
    "mlctl.connectors.prometheus": ["PrometheusClient", "Poller", "Series"],
    "mlctl.connectors.search": ["SearchIndex", "SqliteFtsIndex", "OpenSearchIndex", "make_index"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS,
                                   extras={"confluent_kafka": "kafka", "opensearchpy": "search"})
__all__ = sorted(_EXPORTS)
