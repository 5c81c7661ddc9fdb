//! The JSON body (and the path segments) of every write route, through the same checks the
//! route runs before it reads any state (`parley_api::bodies::decode`).
//!
//! Input: `[route selector][first path segment]\n[second path segment]\n[body ...]`; the
//! segments are the raw (percent-encoded) conversation or group id and user id, as warp hands
//! them to the route, ignored by routes without them. A missing `\n` leaves the segments
//! empty and the rest is the body.
//!
//! Checked: never a panic; a refusal is a client error (400, 404 or 413), never a 5xx; what is
//! accepted serialises back to a body that is accepted as the very same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_api::bodies::{self, Checked, Context, LoginBody, RegisterBody, WriteRoute};
use serde_json::json;

const CTX: Context<'static> = Context { caller: "alice", max_body_bytes: 16 * 1024, max_group_members: 64 };

fn split_line(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b'\n') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (&[], b),
    }
}

/// The body that would make a client send `checked` again.
fn body_of(checked: &Checked) -> serde_json::Value {
    match checked {
        Checked::Register(r) => v(&RegisterBody {
            user_id: r.user_id.clone(),
            password: r.password.clone(),
            display_name: Some(r.display_name.clone()),
        }),
        Checked::Login(b) => v::<LoginBody>(b),
        Checked::FriendRequest(b) => v(b),
        Checked::Send { body, .. } => v(body),
        Checked::Read { body, .. } => v(body),
        Checked::CreateGroup(b) => v(b),
        Checked::UpdateGroup { body, .. } => v(body),
        Checked::AddMembers { body, .. } => v(body),
        Checked::SetRole { role, .. } => json!({ "role": role.as_str() }),
        Checked::Transfer { body, .. } => v(body),
        Checked::Mute { body, .. } => v(body),
        Checked::AddLearner(b) => v(b),
        Checked::AddVoters(b) => v(b),
        Checked::SetMembership(b) => v(b),
    }
}

fn v<T: serde::Serialize>(body: &T) -> serde_json::Value {
    serde_json::to_value(body).expect("a body serialises")
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let route = WriteRoute::ALL[which as usize % WriteRoute::ALL.len()];
    let (first, rest) = split_line(rest);
    let (second, body) = split_line(rest);
    let (Ok(first), Ok(second)) = (std::str::from_utf8(first), std::str::from_utf8(second)) else { return };
    match bodies::decode(route, [first, second], body, &CTX) {
        Err(e) => assert!(matches!(e.status.as_u16(), 400 | 404 | 413), "{route:?} refused with a {}: {e}", e.status),
        Ok(checked) => {
            let again = serde_json::to_vec(&body_of(&checked)).expect("JSON serialises");
            let back = bodies::decode(route, [first, second], &again, &CTX)
                .unwrap_or_else(|e| panic!("{route:?}: {checked:?} re-sent is refused: {e}"));
            assert_eq!(back, checked, "{route:?}: the re-sent body is another request");
        }
    }
});
