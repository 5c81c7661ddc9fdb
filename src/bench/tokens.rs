//! `parley bench tokens`: not a measurement. Registers U users as friends in pairs, logs them
//! in, and writes one `token<TAB>conversation_id` line per user, so an external load tool
//! (`benches/peers/parley_send.lua` for wrk) can send messages without doing logins itself.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::client::{befriend_all, direct_id, login_all, register_all, Http, User};
use super::Common;

/// Flags of `parley bench tokens`.
#[derive(Args, Debug)]
pub struct TokensArgs {
    #[command(flatten)]
    pub common: Common,
    /// Users (rounded up to an even number).
    #[arg(short = 'u', long, default_value_t = 64)]
    pub users: usize,
    /// Where to write the lines.
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(a: TokensArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let n = a.users.max(2).div_ceil(2) * 2;
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    register_all(&http, &targets, &ids, "tokens").await?;
    let users = login_all(&http, &targets, &ids).await?;
    let pairs: Vec<(User, User)> = users.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    befriend_all(&http, &targets, &pairs).await?;
    http.wait_applied(&targets, http.head(&targets).await?).await?;
    let mut out = String::new();
    for (a, b) in &pairs {
        let cid = direct_id(&a.user_id, &b.user_id);
        out.push_str(&format!("{}\t{cid}\n{}\t{cid}\n", a.token, b.token));
    }
    let mut f = std::fs::File::create(&a.out).map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    f.write_all(out.as_bytes()).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    println!("wrote {} tokens ({} conversations) to {}", n, pairs.len(), a.out.display());
    Ok(())
}
