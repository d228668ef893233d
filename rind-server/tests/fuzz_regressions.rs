//! Inputs the fuzz targets in `fuzz/` found crashing (see the README's "Fuzzing" section),
//! replayed through the same entry points. Each test names the target and the input, and says
//! what was wrong.

mod inprocess;

use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::net::UdpSocket;

use rind_server::request::Transport;

/// A fake upstream that answers every query with `script` made to match it the way the
/// `handler` fuzz target's fake did when the input was found: ID, QR=1 and question replaced,
/// everything else (the opcode included) as scripted.
async fn scripted_upstream(script: &'static [u8]) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut reply = Message::from_vec(script).expect("the script parses");
            reply.metadata.id = query.metadata.id;
            reply.metadata.message_type = MessageType::Response;
            reply.queries.clone_from(&query.queries);
            let bytes = reply.to_vec().expect("the script encodes");
            let _ = socket.send_to(&bytes, from).await;
        }
    });
    addr
}

/// `handler`, crash-21f1591f: an upstream reply with opcode UPDATE holding a record with an
/// empty RDATA (which hickory reads as an UPDATE-only "delete" record) was accepted, and the
/// record copied into the client's reply, which no client could then parse. Upstream replies
/// must now have opcode QUERY; this one is ignored, so the client gets SERVFAIL.
#[tokio::test]
async fn handler_upstream_reply_with_update_opcode() {
    // far.home.lan (a local CNAME to far.example.), type 256, class 256, ID 0x1234.
    const QUERY: &[u8] = &[
        18, 52, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 102, 97, 114, 4, 104, 111, 109, 101, 3, 108, 97,
        110, 0, 1, 0, 1, 0,
    ];
    const UPSTREAM: &[u8] = &[
        0, 1, 44, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, 102, 97, 114, 7, 101, 120, 97, 109, 112, 108, 101,
        0, 0, 1, 0, 1, 3, 102, 108, 0, 0, 4, 104, 111, 109, 108, 101, 0, 0, 0, 0, 1, 0, 0, 14, 16,
        0, 0, 4, 192, 0, 110, 9,
    ];
    let rig = inprocess::build(scripted_upstream(UPSTREAM).await).await;
    let reply = inprocess::ask(&rig.handler, QUERY, Transport::Udp)
        .await
        .expect("a reply");
    let msg = Message::from_vec(&reply).expect("the reply parses");
    assert_eq!(msg.metadata.id, 0x1234);
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
}
