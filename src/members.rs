//! `parley members`: change a running cluster's membership through any node's admin API
//! (`/v1/admin/cluster/*`, see `parley_api::routes::admin`).
//!
//! ```text
//! parley members list    --target URL
//! parley members add     --target URL --admin-token T --node-id 4 --addr HOST:PORT [--voter]
//! parley members promote --target URL --admin-token T --node-id 4[,5]
//! parley members remove  --target URL --admin-token T --node-id 1
//! ```
//!
//! Every change is idempotent, so a `503 unavailable` answer (no leader yet, the leader
//! changed, another change in progress) is retried for a while before giving up. Prints the
//! membership after the change, one line per node: `node <id> <addr> voter|learner [leader]`.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// How long 503 answers are retried.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// Flags of `parley members`.
#[derive(Args, Debug, Clone)]
pub struct MembersArgs {
    #[command(subcommand)]
    pub action: Action,
}

/// The node to ask and its admin token.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Any node of the cluster, e.g. http://127.0.0.1:7001.
    #[arg(long, env = "PARLEY_TARGET")]
    pub target: String,
    /// The cluster's admin token.
    #[arg(long, env = "PARLEY_ADMIN_TOKEN")]
    pub admin_token: String,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Show the membership as a node sees it.
    List {
        /// Any node of the cluster, e.g. http://127.0.0.1:7001.
        #[arg(long, env = "PARLEY_TARGET")]
        target: String,
    },
    /// Add a node (started with `parley serve --join`) as a learner and wait until it has
    /// caught up; with --voter, then promote it.
    Add {
        #[command(flatten)]
        target: Target,
        /// The new node's id.
        #[arg(long)]
        node_id: u64,
        /// The new node's HTTP address as the other nodes reach it (host:port).
        #[arg(long)]
        addr: String,
        /// Promote the node to voter once it has caught up.
        #[arg(long)]
        voter: bool,
        /// How long to wait for the node to catch up, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Promote learners to voters (each must have caught up).
    Promote {
        #[command(flatten)]
        target: Target,
        /// Learners to promote: `4` or `4,5`.
        #[arg(long, value_delimiter = ',', required = true)]
        node_id: Vec<u64>,
    },
    /// Remove a node (voter or learner) from the cluster; stop its process afterwards.
    Remove {
        #[command(flatten)]
        target: Target,
        /// The node to remove.
        #[arg(long)]
        node_id: u64,
    },
}

pub fn run(args: MembersArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(members(args.action))
}

async fn members(action: Action) -> Result<(), String> {
    // Long enough for a learner to catch up by snapshot (the server bounds its own wait).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(700))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let cluster = match action {
        Action::List { target } => {
            let url = format!("{}/v1/cluster", base(&target));
            let resp = client.get(url).send().await.map_err(|e| format!("cannot reach {target}: {e}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(describe_error(status, &body));
            }
            body
        }
        Action::Add { target, node_id, addr, voter, wait_secs } => {
            let body = json!({"node_id": node_id, "addr": addr, "wait_ms": wait_secs.saturating_mul(1000)});
            let (status, answer) =
                call(&client, &target, reqwest::Method::POST, "/v1/admin/cluster/learners", body).await?;
            if status == reqwest::StatusCode::ACCEPTED {
                eprintln!("node {node_id} added as a learner, still catching up after {wait_secs} s");
                if voter {
                    return Err(format!("not promoting node {node_id} yet: run `parley members promote` later"));
                }
            } else {
                eprintln!("node {node_id} added as a learner and caught up");
            }
            if voter {
                let body = json!({"node_ids": [node_id], "wait_ms": wait_secs.saturating_mul(1000)});
                let (_, answer) =
                    call(&client, &target, reqwest::Method::POST, "/v1/admin/cluster/voters", body).await?;
                eprintln!("node {node_id} is now a voter");
                answer["cluster"].clone()
            } else {
                answer["cluster"].clone()
            }
        }
        Action::Promote { target, node_id } => {
            let body = json!({ "node_ids": node_id });
            let (_, answer) = call(&client, &target, reqwest::Method::POST, "/v1/admin/cluster/voters", body).await?;
            answer["cluster"].clone()
        }
        Action::Remove { target, node_id } => {
            let path = format!("/v1/admin/cluster/nodes/{node_id}");
            let (_, answer) = call(&client, &target, reqwest::Method::DELETE, &path, Value::Null).await?;
            eprintln!("node {node_id} removed; stop its process");
            answer["cluster"].clone()
        }
    };
    print_members(&cluster);
    Ok(())
}

fn base(target: &str) -> String {
    let t = target.trim_end_matches('/');
    if t.starts_with("http://") || t.starts_with("https://") {
        t.to_string()
    } else {
        format!("http://{t}")
    }
}

/// One admin call, retrying `503` answers and refused connections for [`RETRY_FOR`].
async fn call(
    client: &reqwest::Client,
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Result<(reqwest::StatusCode, Value), String> {
    let url = format!("{}{path}", base(&target.target));
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let mut request = client.request(method.clone(), &url).bearer_auth(&target.admin_token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let err = match request.send().await {
            Ok(resp) => {
                let status = resp.status();
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    return Ok((status, answer));
                }
                let err = describe_error(status, &answer);
                if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    return Err(err);
                }
                err
            }
            Err(e) if e.is_connect() => format!("cannot reach {}: {e}", target.target),
            Err(e) => return Err(format!("{} {url}: {e}", method.as_str())),
        };
        if Instant::now() >= deadline {
            return Err(err);
        }
        eprintln!("{err}; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn describe_error(status: reqwest::StatusCode, body: &Value) -> String {
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"].as_str().unwrap_or("");
    format!("{status}: {code}: {message}")
}

/// `node <id> <addr> voter|learner [leader]`, one line per member.
fn print_members(cluster: &Value) {
    let leader = cluster["leader_id"].as_u64();
    let Some(members) = cluster["members"].as_array() else {
        println!("{cluster}");
        return;
    };
    for m in members {
        let id = m["node_id"].as_u64().unwrap_or(0);
        let role = if m["voter"].as_bool().unwrap_or(false) { "voter" } else { "learner" };
        let lead = if leader == Some(id) { " leader" } else { "" };
        println!("node {id} {} {role}{lead}", m["addr"].as_str().unwrap_or("?"));
    }
}
