//! The load generator's side of the client: its users' password, setup in bulk (register, log
//! in, befriend many users at once) and message bodies. The calls themselves are the one client,
//! `parley_client`, re-exported here.
//!
//! Everything speaks the public contract (`shared/API.md`) over the network, exactly as any
//! other client would: the bench links against no server crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

pub use parley_client::*;

/// Every bench user's password (the server hashes it with argon2id once per registration).
pub const PASSWORD: &str = "parley-bench-password";
/// How many registrations/logins run at once during setup (each costs an argon2id hash on the
/// server, which runs them on a bounded pool anyway).
pub const SETUP_CONCURRENCY: usize = 8;

/// Registers `ids` (spread over the targets), printing progress every few hundred.
pub async fn register_all(http: &Http, targets: &[Target], ids: &[String], label: &str) -> Result<(), String> {
    let done = Arc::new(AtomicU64::new(0));
    let total = ids.len();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = futures_util::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let (http, t, done) = (http.clone(), targets[i % targets.len()].clone(), done.clone());
            async move {
                http.register(&t, id, PASSWORD).await.map_err(|e| format!("register {id}: {e}"))?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 500 == 0 && (n as usize) < total {
                    eprintln!("  {label}: registered {n}/{total} users ({:.0?})", started.elapsed());
                }
                Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    eprintln!("  {label}: registered {total} users in {:.1?}", started.elapsed());
    Ok(())
}

/// Logs `ids` in (each on target `i % targets`), in order.
pub async fn login_all(http: &Http, targets: &[Target], ids: &[String]) -> Result<Vec<User>, String> {
    let started = Instant::now();
    let users: Vec<Result<User, String>> = futures_util::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let (http, t) = (http.clone(), targets[i % targets.len()].clone());
            async move { http.login(&t, id, PASSWORD, "parley-bench").await.map_err(|e| format!("login {id}: {e}")) }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let users = users.into_iter().collect::<Result<Vec<User>, String>>()?;
    eprintln!("  logged in {} users in {:.1?}", users.len(), started.elapsed());
    Ok(users)
}

/// Befriends `(a, b)` pairs.
pub async fn befriend_all(http: &Http, targets: &[Target], pairs: &[(User, User)]) -> Result<(), String> {
    let results: Vec<Result<(), String>> =
        futures_util::stream::iter(pairs.iter().enumerate())
            .map(|(i, (a, b))| {
                let (http, t) = (http.clone(), targets[i % targets.len()].clone());
                async move {
                    http.befriend(&t, a, b).await.map_err(|e| format!("befriend {} {}: {e}", a.user_id, b.user_id))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY * 2)
            .collect()
            .await;
    results.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
}

/// A message body of `n` bytes (ASCII).
pub fn body_of(n: usize) -> String {
    "x".repeat(n.max(1))
}

/// Message bodies that look like chat text to storage: words of a small vocabulary in a fixed
/// pseudo-random order, and a different slice of it for every message. A store that
/// compresses sees text as it compresses (not `xxxx`, which compresses to nothing), and no
/// two consecutive messages are equal.
#[derive(Debug)]
pub struct Bodies {
    text: String,
    len: usize,
}

const WORDS: &[&str] = &[
    "the", "a", "to", "and", "you", "I", "it", "is", "that", "of", "in", "we", "for", "on", "are", "be", "this",
    "with", "have", "can", "just", "so", "but", "not", "what", "at", "was", "do", "if", "me", "my", "your", "all",
    "about", "get", "will", "there", "ok", "yes", "no", "now", "time", "today", "tomorrow", "meeting", "lunch",
    "later", "see", "think", "know", "need", "want", "going", "call", "send", "file", "link", "thanks", "great",
    "sure", "maybe", "sorry", "late", "home", "work", "office", "team", "project", "update", "deploy", "review",
    "coffee", "weekend", "train", "flight", "hotel", "ticket", "photo", "video", "morning", "night", "good", "nice",
    "cool", "haha", "lol", "right", "left", "still", "again", "also", "really", "very", "much", "one", "two", "three",
    "minutes", "hours", "days", "back", "here", "where", "when", "why", "how", "who", "let's",
];

impl Bodies {
    /// Bodies of `len` bytes (at least 1).
    pub fn new(len: usize) -> Bodies {
        let len = len.max(1);
        let mut text = String::with_capacity(len + 65_536 + 16);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while text.len() < len + 65_536 {
            // xorshift64: cheap and the same on every run.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
            text.push(match x >> 58 {
                0 => '.',
                1 => ',',
                2 => '?',
                _ => ' ',
            });
        }
        Bodies { text, len }
    }

    /// The body of message number `n`.
    pub fn at(&self, n: u64) -> &str {
        let span = (self.text.len() - self.len) as u64;
        let start = (n.wrapping_mul(2_654_435_761) % span) as usize;
        &self.text[start..start + self.len]
    }
}

/// A run prefix for user ids: `b` + 6 random hex digits + `_` (user ids: `^[a-z0-9_]{3,32}$`).
pub fn run_prefix() -> String {
    format!("b{}_", &hex::encode(rand::random::<[u8; 4]>())[..6])
}
