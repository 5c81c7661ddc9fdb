//! `parley state`: read models as of a past point in the journal. Replays into a scratch store
//! up to the cursor (or time), then runs the same queries and JSON rendering the API serves.

use std::io::Write;

use clap::{Args, Subcommand};
use parley_storage::Store;
use parley_wire::users::Friend;
use serde_json::{json, Value};

use super::replay::{replay_store, Scratch, ScratchArgs, Until};
use super::{close, open_data_dir, AuditError, DataDirArgs};

#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    pub dir: DataDirArgs,
    /// As of this cursor (inclusive) [default: the end of the journal].
    #[arg(long, value_name = "CURSOR", conflicts_with = "at_ts")]
    pub at: Option<u64>,
    /// As of this time: after the last entry with `ts <= MS`.
    #[arg(long, value_name = "MS")]
    pub at_ts: Option<u64>,
    #[command(flatten)]
    pub scratch: ScratchArgs,
    #[command(subcommand)]
    pub query: StateQuery,
}

#[derive(Subcommand, Debug)]
pub enum StateQuery {
    /// A user's conversation list (seqs, read markers, unread), as `GET /v1/conversations`.
    Conversations {
        #[arg(long, value_name = "USER")]
        user: String,
    },
    /// A user's groups, as `GET /v1/groups`.
    Groups {
        #[arg(long, value_name = "USER")]
        user: String,
    },
    /// A user's friends, as `GET /v1/friends`.
    Friends {
        #[arg(long, value_name = "USER")]
        user: String,
    },
}

/// Runs `query` against a store.
pub fn query(store: &Store, query: &StateQuery) -> Result<Value, AuditError> {
    let user = match query {
        StateQuery::Conversations { user } | StateQuery::Groups { user } | StateQuery::Friends { user } => user,
    };
    if store.user(user)?.is_none() {
        return Err(AuditError::Other(format!("no user {user:?} at cursor {}", store.applied_cursor())));
    }
    let cursor = store.applied_cursor();
    Ok(match query {
        StateQuery::Conversations { user } => {
            let list = store
                .conversations(user)?
                .iter()
                .map(|c| parley_wire::storage::conversation(c, user, store))
                .collect::<Result<Vec<_>, _>>()?;
            json!({"cursor": cursor, "user_id": user, "conversations": canonical(&list)?})
        }
        StateQuery::Groups { user } => {
            let mut groups = Vec::new();
            for gid in store.groups_of(user)? {
                if let Some(rec) = store.group(gid)? {
                    groups.push(parley_wire::storage::group(store, gid, &rec)?);
                }
            }
            json!({"cursor": cursor, "user_id": user, "groups": canonical(&groups)?})
        }
        StateQuery::Friends { user } => {
            let friends: Vec<Friend> =
                store.friends(user)?.into_iter().map(|(user_id, since)| Friend { user_id, since }).collect();
            json!({"cursor": cursor, "user_id": user, "friends": canonical(&friends)?})
        }
    })
}

fn canonical<T: serde::Serialize>(v: &T) -> Result<Value, AuditError> {
    parley_wire::canonical_value(v).map_err(|e| AuditError::Other(format!("cannot render: {e}")))
}

pub fn run(args: StateArgs) -> Result<(), String> {
    run_inner(args).map_err(|e| e.to_string())
}

fn run_inner(args: StateArgs) -> Result<(), AuditError> {
    let source = open_data_dir(&args.dir.data_dir, args.dir.cache_mb)?;
    let scratch = Scratch::new(&args.scratch)?;
    let until = Until::from_flags(args.at, args.at_ts);
    let mut replayer = scratch.query_replayer(&args.scratch);
    let r = replay_store(&source, until, &mut replayer)?;
    replayer.finish_for_queries()?;
    if let Until::Cursor(c) = until {
        if c > r.cursor {
            eprintln!("note: the journal ends at cursor {}, before --at {c}", r.cursor);
        }
    }
    let v = query(&scratch.store, &args.query)?;
    let text = serde_json::to_string_pretty(&v).map_err(|e| AuditError::Other(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    scratch.discard();
    close(source)
}
