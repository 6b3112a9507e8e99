//! `vouchctl token create|list|revoke`: API tokens with a role (admin only).

use anyhow::Result;
use clap::Subcommand;

use super::client::Client;
use super::seg;
use crate::api::{TokenCreateBody, TokenCreatedView, TokenView};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once, on stdout.
    Create {
        /// admin, operator, viewer or auditor.
        #[arg(long)]
        role: String,
        /// 1 to 64 of A-Z a-z 0-9 . _ - (never reused, even after revoke).
        #[arg(long)]
        name: String,
    },
    /// List tokens (name, role, created, revoked; never a secret).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token; refused from the next request on.
    Revoke { name: String },
}

pub fn run(c: &Client, cmd: &TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create { role, name } => {
            let body = TokenCreateBody {
                name: name.clone(),
                role: role.clone(),
            };
            let v: TokenCreatedView = c.post_json("/api/tokens", &body)?;
            println!("{}", v.token);
            eprintln!(
                "vouchctl: token {} (role {}) created; the secret above is shown only once",
                v.info.name, v.info.role
            );
        }
        TokenCommand::List { json } => {
            let list: Vec<TokenView> = c.get("/api/tokens")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("NAME\tROLE\tCREATED\tREVOKED");
                for t in list {
                    println!(
                        "{}\t{}\t{}\t{}",
                        t.name,
                        t.role,
                        t.created_at,
                        t.revoked_at.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        TokenCommand::Revoke { name } => {
            let v: TokenView = c.post_json(&format!("/api/tokens/{}/revoke", seg(name)), &())?;
            println!("token {} revoked", v.name);
        }
    }
    Ok(())
}
