//! NOTIFY out (RFC 1996): after each change to a zone, and once at start, every target in
//! the zone's `notify` list hears the new serial, again and again until it answers.
//!
//! One task per (zone, target) sends the latest serial it was given; a newer serial while a
//! NOTIFY is unanswered replaces it rather than queueing behind it. Each try waits
//! [`FIRST_WAIT`] for the answer, doubling up to [`LONGEST_WAIT`], for at most [`TRIES`] tries
//! (about an hour): a secondary that is down for longer catches up on its SOA refresh timer.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::records::Records;
use crate::tsig::{self, Keyring, Signer};

/// Wait for the first answer.
pub const FIRST_WAIT: Duration = Duration::from_millis(500);
/// Longest wait between tries.
pub const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// Tries before a NOTIFY is given up (the SOA refresh timer is the backstop).
pub const TRIES: u32 = 70;

/// Listens for zones whose serial moved and notifies their targets until `shutdown`.
pub fn spawn(
    records: Arc<Records>,
    keys: Keyring,
    changes: mpsc::UnboundedReceiver<Name>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let inner = tracker.clone();
    tracker.spawn(async move {
        let mut senders: HashMap<(Name, SocketAddr), watch::Sender<u32>> = HashMap::new();
        // At start every zone counts as changed: secondaries that missed changes while rind
        // was down hear about the zone at once.
        super::follow_zones(&records, changes, &shutdown.clone(), |name| {
            let Some(zone) = records.zone_named(name) else {
                // Deleted: dropping its senders ends their tasks, retries and all.
                senders.retain(|(apex, _), _| apex != name);
                return;
            };
            senders.retain(|(apex, target), _| apex != name || zone.notify.contains(target));
            for target in &zone.notify {
                let key = (zone.name.clone(), *target);
                if let Some(sender) = senders.get(&key) {
                    sender.send_replace(zone.serial);
                    continue;
                }
                let (sender, serials) = watch::channel(zone.serial);
                senders.insert(key, sender);
                let signer_key = zone.tsig.as_ref().and_then(|k| keys.get(k).cloned());
                inner.spawn(notify_target(
                    zone.name.clone(),
                    *target,
                    signer_key,
                    serials,
                    shutdown.clone(),
                ));
            }
        })
        .await;
    });
}

/// Notifies `target` of each serial `serials` gives, until it answers each; ends when the
/// sender goes (the zone was deleted, or `target` left its `notify` list).
async fn notify_target(
    zone: Name,
    target: SocketAddr,
    key: Option<Arc<tsig::Key>>,
    mut serials: watch::Receiver<u32>,
    shutdown: CancellationToken,
) {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(%zone, %target, error = %e, "cannot open a socket for NOTIFY");
            return;
        }
    };
    loop {
        let serial = *serials.borrow_and_update();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = serials.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            done = notify_until_answered(&socket, &zone, target, key.as_ref(), serial) => {
                if !done {
                    tracing::warn!(%zone, %target, serial, "NOTIFY never answered; the secondary will find the change on its refresh timer");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = serials.changed() => if changed.is_err() { return },
        }
    }
}

/// Sends NOTIFY for `serial` and waits for the answer, trying again with growing waits.
/// `true` once `target` answered.
async fn notify_until_answered(
    socket: &UdpSocket,
    zone: &Name,
    target: SocketAddr,
    key: Option<&Arc<tsig::Key>>,
    serial: u32,
) -> bool {
    let mut wait = FIRST_WAIT;
    for _ in 0..TRIES {
        let id: u16 = rand::random();
        let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        let mut question = Query::query(zone.clone(), RecordType::SOA);
        question.query_class = DNSClass::IN;
        message.add_query(question.clone());
        let Ok(mut bytes) = message.to_vec() else {
            return false;
        };
        let mut signer = key.map(|k| Signer::request(Arc::clone(k)));
        if let Some(signer) = &mut signer {
            signer.sign(&mut bytes, tsig::now());
        }
        if let Err(e) = socket.send_to(&bytes, target).await {
            tracing::debug!(%zone, %target, error = %e, "NOTIFY not sent");
        } else if let Some(rcode) = answer(socket, target, id, &question, wait, signer).await {
            match rcode {
                ResponseCode::NoError => {
                    tracing::debug!(%zone, %target, serial, "NOTIFY acknowledged");
                }
                other => {
                    tracing::warn!(%zone, %target, serial, rcode = %other, "NOTIFY refused by the secondary");
                }
            }
            return true;
        }
        wait = (wait * 2).min(LONGEST_WAIT);
    }
    false
}

/// The rcode of the answer to NOTIFY `id` from `target`, waiting at most `wait`; other
/// packets (late answers to earlier tries, strangers) are skipped.
async fn answer(
    socket: &UdpSocket,
    target: SocketAddr,
    id: u16,
    question: &Query,
    wait: Duration,
    mut signer: Option<Signer>,
) -> Option<ResponseCode> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer))
            .await
            .ok()?
            .ok()?;
        let Some(packet) = buffer.get(..len) else {
            continue;
        };
        if from != target {
            continue;
        }
        let Ok(reply) = Message::from_vec(packet) else {
            continue;
        };
        let matches = reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply.metadata.op_code == OpCode::Notify
            && reply.queries.first().is_some_and(|q| q == question);
        if !matches {
            continue;
        }
        if let Some(signer) = &mut signer {
            if !signer.verify_response(packet, tsig::now()) {
                tracing::debug!(%target, "NOTIFY answer with a bad TSIG; ignored");
                continue;
            }
        }
        return Some(reply.metadata.response_code);
    }
}
