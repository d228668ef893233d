//! A minimal authoritative upstream for load tests on loopback: every name under
//! `bench.example.` has A 203.0.113.1 (TTL 3600), names whose first label starts with `nx`
//! are NXDOMAIN with an SOA, other types are NODATA with an SOA. UDP only, one socket per core.
//!
//! ```sh
//! cargo run --release -p rind-server --example bench_upstream -- 127.0.0.1:5300
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use socket2::{Domain, Protocol, Socket, Type};

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5300".into())
        .parse()?;
    let zone = Arc::new(Name::from_str("bench.example.")?);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut handles = Vec::new();
    for _ in 0..threads {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        let zone = Arc::clone(&zone);
        handles.push(std::thread::spawn(move || serve(&socket, &zone)));
    }
    eprintln!("bench_upstream answering on {addr}");
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a server thread panicked"))??;
    }
    Ok(())
}

fn serve(socket: &std::net::UdpSocket, zone: &Name) -> anyhow::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let (len, peer) = socket.recv_from(&mut buf)?;
        let Some(reply) = buf.get(..len).and_then(|q| answer(q, zone)) else {
            continue;
        };
        let _ = socket.send_to(&reply, peer);
    }
}

fn answer(query: &[u8], zone: &Name) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let q = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.authoritative = true;
    reply.add_query(q.clone());
    if let Some(edns) = query.edns.clone() {
        reply.set_edns(edns);
    }
    let soa = || {
        let data = SOA::new(
            Name::from_str("ns.bench.example.").ok()?,
            Name::from_str("host.bench.example.").ok()?,
            1,
            3600,
            600,
            86_400,
            60,
        );
        Some(Record::from_rdata(zone.clone(), 3600, RData::SOA(data)))
    };
    let first = q.name.iter().next().unwrap_or_default();
    if !zone.zone_of(&q.name) {
        reply.metadata.response_code = ResponseCode::Refused;
    } else if first.starts_with(b"nx") {
        reply.metadata.response_code = ResponseCode::NXDomain;
        reply.add_authority(soa()?);
    } else if q.query_type == RecordType::A {
        reply.add_answer(Record::from_rdata(
            q.name.clone(),
            3600,
            RData::A(A(Ipv4Addr::new(203, 0, 113, 1))),
        ));
    } else {
        reply.add_authority(soa()?);
    }
    reply.to_vec().ok()
}
