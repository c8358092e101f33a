"""Trunkline events: NATS subjects and the publishers and subscribers that use them.

- `trunkline.events.subjects`: subject names, the one place they are spelt;
- `trunkline.events.config`: configuration-change notices on core NATS
  (`ConfigPublisher` in the API, `subscribe_config` in every service that caches config);
- `trunkline.events.calls`: call lifecycle events on the JetStream stream CALLS
  (`CallEventPublisher` in signaling, `ensure_calls_stream`, `subscribe_calls` for consumers);
- `trunkline.events.connection`: connecting with logged reconnects, and `flush`, a flush
  that really confirms what was sent;
- `trunkline.events.testing`: `NatsServer`, a throwaway nats-server for component tests.

Every message carries the W3C trace context in its NATS headers, so a consumer's work joins
the producer's trace.
"""
