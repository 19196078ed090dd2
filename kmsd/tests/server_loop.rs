//! What kmsd's connection loop promises beyond one request at a time, against a real
//! kmsd: requests that arrive together are answered in order, and their trail records
//! go to the file with one `write(2)` before any of the replies.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Daemon;
use kmsd::protocol::{
    decode_response, encode_frame, CreateKeyRequest, DescribeKeyRequest, Request, RequestEnvelope,
    Response, PROTOCOL_VERSION,
};

fn frame(request: Request) -> Vec<u8> {
    let env = RequestEnvelope {
        version: PROTOCOL_VERSION,
        act_as: None,
        via: None,
        request,
        signer: None,
    };
    let mut buf = Vec::new();
    encode_frame(&env, &mut buf).unwrap();
    buf
}

fn read_reply(s: &mut UnixStream) -> Response {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    decode_response(&payload).unwrap().result.unwrap()
}

/// Ten requests sent with one write on one connection: ten replies in order, ten
/// events in the trail, written as one group.
#[test]
fn requests_that_arrive_together_are_answered_in_order_and_recorded_with_one_write() {
    let d = Daemon::start();
    let c = d.client();
    let key = c.create_key(CreateKeyRequest::default()).unwrap().key_id;
    let before = c.status().unwrap().trail.unwrap();

    let mut burst = Vec::new();
    for i in 0..10 {
        burst.extend(frame(if i % 2 == 0 {
            Request::DescribeKey(DescribeKeyRequest {
                key_id: key.clone(),
                grant_tokens: Vec::new(),
            })
        } else {
            Request::ListKeys(Default::default())
        }));
    }
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&burst).unwrap();
    for i in 0..10 {
        match (i % 2, read_reply(&mut s)) {
            (0, Response::DescribeKey(r)) => assert_eq!(r.key_metadata.key_id, key),
            (1, Response::ListKeys(r)) => assert_eq!(r.keys.len(), 1),
            (_, other) => panic!("reply {i} out of order: {}", other.operation()),
        }
    }

    let after = c.status().unwrap().trail.unwrap();
    assert_eq!(after.events - before.events, 10, "{before:?} -> {after:?}");
    assert_eq!(
        after.writes - before.writes,
        1,
        "the burst's records should be one write: {before:?} -> {after:?}"
    );
}
