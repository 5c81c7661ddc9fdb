//! `parley serve` flags every test harness passes.
//!
//! The per-source-IP limits, off: every test client is 127.0.0.1, and a suite registers, logs
//! in and calls admin endpoints far more often than any person. A test of those limits passes
//! its own values (`node.rs` then leaves these out).

pub const IP_LIMITS_OFF: &[&str] =
    &["--login-rate-limit-per-ip", "0", "--register-rate-limit-per-ip", "0", "--admin-rate-limit-per-ip", "0"];
