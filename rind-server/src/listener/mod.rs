//! Transports: DNS over UDP and over TCP. They own framing, limits, timeouts and concurrency,
//! and hand every packet to the [`Handler`](crate::handler::Handler).

pub mod tcp;
pub mod udp;
