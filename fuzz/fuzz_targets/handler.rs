//! The whole DNS path, bytes in → reply bytes out: `Handler::begin`, and `Handler::finish`
//! against the rig's fake upstream when the answer needs one.
//!
//! Input: `[flags, len_hi, len_lo, query (len bytes), upstream reply (the rest)]`.
//! - flags bit 0: the query came over TCP (else UDP); bit 1: from a client outside the ACL;
//!   bits 2-7: the clock runs that many 128-second steps past the time the cache was filled
//!   (up to 8064 s: past every TTL, through the serve-stale window and beyond it);
//! - the upstream reply is what the fake upstream answers a forwarded question with (its ID
//!   and question are made to match; see `rind_fuzz::scripted_reply`).
//!
//! Asserts: no panic; no answer takes longer than the contract's 5 s; a reply parses, has
//! QR=1, the query's ID and its question, and over UDP fits the client's limit.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rind_fuzz::{check_reply, Rig, CLIENT, OUTSIDER, START};
use rind_server::handler::Step;
use rind_server::request::Transport;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (query, script) = rest.split_at(len);
    let transport = if flags & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let client = if flags & 2 == 0 { CLIENT } else { OUTSIDER };
    let now = START + u64::from(flags >> 2) * 128;

    let rig = Rig::get();
    rig.script(script);
    let handler = rig.handler(now);
    let step = {
        let _in_runtime = rig.enter();
        handler.begin(query, client, transport)
    };
    let reply = match step {
        Step::Done(reply) => reply,
        Step::Forward(waiting) => Some(rig.block_on(async {
            tokio::time::timeout(Duration::from_secs(6), handler.finish(waiting))
                .await
                .expect("no reply within 6 s")
        })),
        // The rig serves no zones, so every AXFR/IXFR is answered in one message.
        Step::Transfer(_) => panic!("a zone transfer stream from a rig without zones"),
    };
    if let Some(reply) = reply {
        check_reply(query, &reply, transport);
    }
});
