//! The `parley` package's library: the offline audit tools, so that what they decode from
//! untrusted files (an export's JSON lines, read back by `parley import` and `parley audit
//! verify --from-export`) is reachable from the fuzz targets in `fuzz/` and from tests. The
//! binary (`main.rs`) is the only other user.
//!
//! # Layout
//! - [`audit`]: replay, verify, export, import, state and the fixture generator.
pub mod audit;
