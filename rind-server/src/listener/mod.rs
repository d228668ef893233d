//! Transports: DNS over UDP, TCP, TLS and HTTPS. They own framing, limits, timeouts and
//! concurrency, and hand every packet to the [`Handler`](crate::handler::Handler).

pub mod https;
mod mmsg;
pub mod tcp;
pub mod tls;
pub mod udp;
