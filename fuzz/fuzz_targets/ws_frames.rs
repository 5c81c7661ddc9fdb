//! A WebSocket client frame, through the socket's own decoder (`parley_api::ws::decode_frame`)
//! and, for a `send`, the checks `send_message` runs before it proposes anything
//! (`SendBody::check`). The input is the frame's text (non-UTF-8 input is skipped: tungstenite
//! refuses such a text frame before the server sees it).
//!
//! Checked: never a panic; a refusal is a client error (400 or 413); a decoded frame
//! serialises back to a frame that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_api::ws::{decode_frame, ClientFrame};
use serde_json::json;

const MAX_BODY_BYTES: u64 = 16 * 1024;

/// The text of a frame a client would send to get `frame` again.
fn text_of(frame: &ClientFrame) -> Option<String> {
    let v = match frame {
        ClientFrame::Ping { req } => json!({"type": "ping", "req": req}),
        ClientFrame::Sync { since } => json!({"type": "sync", "since": since}),
        ClientFrame::Send { req, conversation_id, body } => {
            let mut v = serde_json::to_value(body).expect("a body serialises");
            v["type"] = "send".into();
            v["req"] = req.clone();
            v["conversation_id"] = conversation_id.clone().into();
            v
        }
        ClientFrame::Read { req, conversation_id, seq } => {
            json!({"type": "read", "req": req, "conversation_id": conversation_id, "seq": seq})
        }
        ClientFrame::Refused { .. } => return None,
    };
    Some(v.to_string())
}

fn same(a: &ClientFrame, b: &ClientFrame) -> bool {
    match (a, b) {
        (ClientFrame::Ping { req: x }, ClientFrame::Ping { req: y }) => x == y,
        (ClientFrame::Sync { since: x }, ClientFrame::Sync { since: y }) => x == y,
        (
            ClientFrame::Send { req: r1, conversation_id: c1, body: b1 },
            ClientFrame::Send { req: r2, conversation_id: c2, body: b2 },
        ) => r1 == r2 && c1 == c2 && b1 == b2,
        (
            ClientFrame::Read { req: r1, conversation_id: c1, seq: s1 },
            ClientFrame::Read { req: r2, conversation_id: c2, seq: s2 },
        ) => r1 == r2 && c1 == c2 && s1 == s2,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let frame = decode_frame(text);
    match &frame {
        ClientFrame::Refused { error, .. } => {
            assert_eq!(error.status.as_u16(), 400, "a refused frame is a client error: {error}");
            return;
        }
        ClientFrame::Send { conversation_id, body, .. } => {
            if let Err(e) = body.check(conversation_id, MAX_BODY_BYTES) {
                let e = parley_api::ApiError::from(e);
                assert!(matches!(e.status.as_u16(), 400 | 413), "a refused send is a client error: {e}");
            }
        }
        _ => {}
    }
    let again = text_of(&frame).expect("an accepted frame has a text");
    let back = decode_frame(&again);
    assert!(same(&back, &frame), "{frame:?} re-sent decodes as {back:?}");
});
