//! `dash registry`: credentials for image registries, kept by the server.

use clap::Subcommand;
use dash_core::api::LoginRequest;
use hyper::Method;

use crate::client::Client;
use crate::progress;
use crate::{encode, print_json};

/// `dash registry …`.
#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Store credentials for a registry (checked against it first; kept 0600 on the server).
    Login {
        /// The registry, `host[:port]`.
        registry: String,
        /// The user name (asked for when not given).
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget a registry's credentials.
    Logout {
        /// The registry, `host[:port]`.
        registry: String,
    },
}

/// Runs `dash registry …`.
pub async fn run(client: &Client, json: bool, cmd: RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Login {
            registry,
            username,
            password_stdin,
        } => {
            let (username, password) = credentials(username, password_stdin)?;
            let req = LoginRequest {
                registry: registry.clone(),
                username,
                password,
            };
            client
                .call(Method::POST, "/v1/registries/login", Some(&req))
                .await?;
            if json {
                print_json(&serde_json::json!({"registry": registry, "login": true}))
            } else {
                println!("login succeeded for {registry}")
            }
        }
        RegistryCmd::Logout { registry } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/registries/{}", encode(&registry)),
                    None::<&()>,
                )
                .await?;
            if json {
                print_json(&serde_json::json!({"registry": registry, "login": false}))
            } else {
                println!("removed credentials for {registry}")
            }
        }
    }
    Ok(())
}

/// Username and password for `dash registry login`: flags, standard input, or prompts
/// (the password without echo when on a terminal).
fn credentials(username: Option<String>, password_stdin: bool) -> anyhow::Result<(String, String)> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let username = match username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let password = if password_stdin {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        progress::read_password("Password: ")?
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!(
            "a username and a password are needed: dash registry login REGISTRY -u USER --password-stdin"
        );
    }
    Ok((username, password))
}
