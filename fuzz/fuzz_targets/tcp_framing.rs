//! DNS over TCP: the listener's real connection code (`listener::tcp::serve`) over an
//! in-memory stream. The input is everything the client sends; it then half-closes and reads
//! until the server closes.
//!
//! Asserts: no panic; the connection ends within 10 s (nothing hangs); what comes back is a
//! sequence of whole frames (2-byte length, then that many bytes), each a reply that parses,
//! answers one of the complete frames sent before the first unframeable one (matching ID and
//! question), at most one reply per query.

#![no_main]

use std::time::Duration;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use rind_fuzz::{peer, reply_problem, Rig, START};
use rind_server::listener::tcp::serve;
use rind_server::request::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The queries the server reads from `stream`: length-prefixed frames up to the first prefix
/// under 12 bytes (the server closes there) or the first frame cut short by the end.
fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let Some((len, rest)) = stream.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        if len < 12 || rest.len() < len {
            break;
        }
        let (frame, rest) = rest.split_at(len);
        frames.push(frame);
        stream = rest;
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let rig = Rig::get();
    rig.script(&[]);
    let handler = rig.handler(START);
    let received = rig.block_on(async {
        let (client, server) = tokio::io::duplex(4096);
        let (reader, writer) = tokio::io::split(server);
        let serving = tokio::spawn(serve(
            reader,
            writer,
            peer(),
            Duration::from_secs(1),
            handler,
            CancellationToken::new(),
        ));
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let send = async {
            // The server may close first (a bad length prefix): the rest has nowhere to go.
            let _ = to_server.write_all(data).await;
            let _ = to_server.shutdown().await;
        };
        let mut received = Vec::new();
        let exchange = async {
            let ((), read) = tokio::join!(send, from_server.read_to_end(&mut received));
            read
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the connection did not end within 10 s")
            .expect("reading the replies failed");
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("serve did not return within 10 s")
            .expect("serve panicked");
        received
    });

    let mut unanswered = frames(data);
    let mut rest = received.as_slice();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .expect("a reply cut inside its length prefix");
        let len = usize::from(u16::from_be_bytes(*len));
        assert!(tail.len() >= len, "a reply frame cut short");
        let (reply, tail) = tail.split_at(len);
        // Several queries may share an ID: a query hickory reads whole (whose reply is checked
        // in full) is matched first.
        let fits = |query: &&[u8]| reply_problem(query, reply, Transport::Tcp).is_none();
        let matching = unanswered
            .iter()
            .position(|query| Message::from_vec(query).is_ok() && fits(query))
            .or_else(|| unanswered.iter().position(fits));
        match matching {
            Some(i) => {
                unanswered.swap_remove(i);
            }
            None => {
                let problem = unanswered
                    .iter()
                    .find(|query| query.get(..2) == reply.get(..2))
                    .and_then(|query| reply_problem(query, reply, Transport::Tcp))
                    .unwrap_or_else(|| "no query left with the reply's ID".to_string());
                panic!("{problem}\nreply: {reply:?}");
            }
        }
        rest = tail;
    }
});
