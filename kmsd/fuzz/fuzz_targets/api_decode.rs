//! Arbitrary bytes through both request decoders kmsd has: the AWS JSON 1.1 edge
//! (`Request::from_aws_json`, first byte picks the operation) and the socket's
//! postcard frames (`decode_request`). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&pick, body)) = data.split_first() {
        let ops = kmsd::api::OPERATIONS;
        let op = ops[usize::from(pick) % ops.len()];
        if let Ok(request) = kmsd::api::Request::from_aws_json(op, body) {
            assert_eq!(request.operation(), op);
            let _ = request.request_parameters();
        }
    }
    let _ = kmsd::protocol::decode_request(data);
});
