//! Every raft RPC body a node decodes (`parley_raft::wire`: a version byte, then postcard),
//! requests on the inbound `/raft/*` routes and answers on the outbound side, plus the
//! snapshot record the state machine keeps in the same encoding. The first byte picks the
//! type; the rest is the body as it arrives.
//!
//! Checked: decoding never panics; whatever decodes re-encodes, and that encoding decodes to a
//! value that encodes to the very same bytes (encode . decode is stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_raft::snapshot::Manifest;
use parley_raft::types::{
    AppendEntriesRequest, AppendEntriesResponse, Fatal, RemoteRaftError, SnapshotMeta, SnapshotResponse, VoteRequest,
    VoteResponse,
};
use parley_raft::wire::{self, Page, PageRequest, SnapshotRequest};

fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(body: &[u8]) {
    let Ok(value) = wire::decode::<T>(body) else { return };
    let once = wire::encode(&value).expect("a decoded value encodes");
    let again: T = wire::decode(&once).expect("a re-encoded value decodes");
    assert_eq!(wire::encode(&again).expect("encodes"), once, "encode(decode(encode(x))) != encode(x)");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 9 {
        // Inbound requests (api/src/routes/raft.rs -> RaftNode::handle_*).
        0 => stable::<AppendEntriesRequest>(body),
        1 => stable::<VoteRequest>(body),
        2 => stable::<SnapshotRequest>(body),
        3 => stable::<PageRequest>(body),
        // Answers to our own requests (raft/src/network.rs).
        4 => stable::<Result<AppendEntriesResponse, RemoteRaftError>>(body),
        5 => stable::<Result<VoteResponse, RemoteRaftError>>(body),
        6 => stable::<Result<SnapshotResponse, Fatal>>(body),
        7 => stable::<Page>(body),
        // The state machine's `raft_snapshot` record (inside its checksummed frame).
        _ => stable::<(SnapshotMeta, Manifest)>(body),
    }
});
