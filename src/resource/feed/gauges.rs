//! The event feed's gauges on `/metrics`: subscribers, the `LISTEN` connection, open
//! streams, catch-ups and slow clients dropped — every resource's feed together.
//! Registered by `Apps::register_metrics`, read on each scrape.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Feeds;
use crate::metrics::{counter, gauge};

impl Collector for Feeds {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let listener = &self.listener;
        let streams = &self.streams;
        for (name, help, value) in [
            (
                "pgbridge_events_subscribers",
                "Open event streams (every resource's /…/events).",
                listener.subscribers(),
            ),
            (
                "pgbridge_events_listener_up",
                "1 while the LISTEN connection is up.",
                usize::from(listener.is_connected()),
            ),
            (
                "pgbridge_events_open_streams",
                "Open event streams under the cap (EVENTS_MAX_STREAMS).",
                streams.open_streams(),
            ),
            (
                "pgbridge_events_catch_ups",
                "Event streams replaying from the table now.",
                streams.catch_ups(),
            ),
        ] {
            gauge(&mut e, name, help, value)?;
        }
        counter(
            &mut e,
            "pgbridge_events_dropped_slow",
            "Event streams dropped because their client stopped reading.",
            streams.dropped(),
        )
    }
}
