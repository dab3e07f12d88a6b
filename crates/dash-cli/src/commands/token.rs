//! `dash token`: access tokens for the admin API (read, deploy, admin) and join tokens that
//! admit new nodes (worker, master).

use clap::Subcommand;
use dash_core::api::{TokenCreated, TokenInfo, TokenRequest};

use crate::client::Client;
use crate::output::{self, Table};
use crate::print_json;

/// What `dash token ls` prints; its help names them.
pub(crate) const LS_COLUMNS: [&str; 5] = ["ID", "ROLE", "AGE", "EXPIRES", "STATE"];

/// `dash token …`.
#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// A new token, printed once.
    Create {
        /// What the token lets its holder do: read (GETs of the admin API), deploy (also apply,
        /// scale, rollback, exec, images), admin (everything: nodes, tokens, backups, audit);
        /// or worker (`dash worker --join`), master (`dash server --join`) to join a node.
        #[arg(long, default_value = "worker")]
        role: String,
        /// Lifetime, e.g. 1h, 30m (default: until revoked).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Tokens: id, role, age, expires, state (valid, expired or revoked).
    Ls,
    /// Revoke a token by id: it opens nothing and admits no node from now on.
    Revoke {
        /// The token's id, as `dash token ls` shows it.
        id: String,
    },
}

/// Runs `dash token …`.
pub async fn run(client: &Client, json: bool, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create { role, ttl } => {
            let ttl_s = match ttl {
                None => None,
                Some(t) => Some(
                    dash_core::units::parse_duration(&t)
                        .map_err(|e| anyhow::anyhow!("--ttl {t:?}: {e}"))?
                        .as_secs(),
                ),
            };
            let created: TokenCreated = client
                .post("/v1/tokens", &TokenRequest { role, ttl_s })
                .await?;
            if json {
                print_json(&created);
            } else {
                println!("{}", created.token);
            }
        }
        TokenCmd::Ls => {
            let tokens: Vec<TokenInfo> = client.get("/v1/tokens").await?;
            if json {
                print_json(&tokens);
            } else {
                let now = output::now_ms();
                let mut t = Table::new(LS_COLUMNS);
                for tok in tokens {
                    let state = if tok.revoked_ms.is_some() {
                        "revoked"
                    } else if tok.expires_ms.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "valid"
                    };
                    t.row([
                        tok.id,
                        tok.role,
                        dash_core::units::format_age(std::time::Duration::from_millis(
                            now.saturating_sub(tok.created_ms),
                        )),
                        tok.expires_ms.map_or("never".into(), |e| {
                            if e > now {
                                format!(
                                    "in {}",
                                    dash_core::units::format_age(std::time::Duration::from_millis(
                                        e - now
                                    ))
                                )
                            } else {
                                format!(
                                    "{} ago",
                                    dash_core::units::format_age(std::time::Duration::from_millis(
                                        now - e
                                    ))
                                )
                            }
                        }),
                        state.into(),
                    ]);
                }
                t.print();
            }
        }
        TokenCmd::Revoke { id } => {
            let info: TokenInfo = client.delete(&format!("/v1/tokens/{id}")).await?;
            if json {
                print_json(&info);
            } else {
                println!("revoked {}", info.id);
            }
        }
    }
    Ok(())
}
