//! `drover audit`: the audit log, newest first (admin tokens).

use clap::Args;
use drover_api::audit::AuditParams;

use crate::cli::ClientOpts;
use crate::output::{self, Format, Table};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Only records since this RFC 3339 time, or this long ago (1h, 7d).
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
    /// Only records of the token with this name (`--token` is the caller's own token).
    #[arg(long = "by", value_name = "TOKEN-NAME")]
    pub by: Option<String>,
    /// At most this many records (1 to 1000).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<u8> {
    let client = super::client(&args.client)?;
    let params = AuditParams {
        since: args.since,
        token: args.by,
        before: None,
        limit: Some(args.limit),
    };
    let list = client.audit(&params).await?;
    match args.client.output {
        Format::Json => output::json(&list)?,
        Format::Text => {
            let mut t = Table::new(vec![
                "AT",
                "TOKEN",
                "ROLE",
                "REMOTE",
                "STATUS",
                "OPERATION",
                "OBJECT",
            ]);
            for r in &list.records {
                let dash = || "-".to_string();
                t.row(vec![
                    r.at.clone(),
                    r.token.clone().unwrap_or_else(dash),
                    r.role.clone().unwrap_or_else(dash),
                    r.remote.clone(),
                    r.status.to_string(),
                    r.operation.clone(),
                    r.object.clone(),
                ]);
            }
            output::text(&t.render())?;
        }
    }
    Ok(0)
}
