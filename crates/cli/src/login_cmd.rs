//! `jitgate whoami`, `login` and `logout`: who you are here, and signing in and out.

use std::path::PathBuf;

use serde_json::json;

use crate::client::Client;
use crate::output::{self, out};
use crate::{Conn, Output, login};

/// `jitgate whoami`: who the token belongs to, where that identity came from, and when it ends.
pub async fn whoami(conn: &Conn) -> anyhow::Result<()> {
    let client = Client::new(&conn.url, conn.token.clone())?;
    let me = client.get("/api/v1/whoami").await?;
    if conn.output == Output::Json {
        out!("{me}");
    } else {
        output::fields(
            &me,
            &[
                "name",
                "kind",
                "groups",
                "admin",
                "auditor",
                "gateway",
                "source",
                "session",
                "expires_at",
            ],
        );
    }
    Ok(())
}

/// `jitgate login`: a workload JWT traded with `--provider`, else a person's sign-in (device
/// flow, or a browser with `--browser`).
pub async fn login(
    conn: &Conn,
    provider: Option<String>,
    jwt_file: Option<PathBuf>,
    id_token: Option<String>,
    browser: bool,
) -> anyhow::Result<()> {
    let json_out = conn.output == Output::Json;
    let say = |line: &str| {
        if json_out {
            eprintln!("{line}");
        } else {
            out!("{line}");
        }
    };
    let issued = match provider {
        Some(provider) => {
            login::login_workload(&conn.url, &provider, jwt_file.as_deref(), id_token).await?
        }
        None if browser => login::login_browser(&conn.url, say).await?,
        None => login::login_device(&conn.url, say).await?,
    };
    let mut shown = issued.clone();
    shown.as_object_mut().map(|o| o.remove("token"));
    if conn.output == Output::Json {
        out!("{shown}");
    } else {
        output::fields(&shown, &["name", "kind", "groups", "session", "expires_at"]);
    }
    Ok(())
}

/// `jitgate logout`: end the stored session on the server and forget it here.
pub async fn logout(conn: &Conn) -> anyhow::Result<()> {
    let ended = login::logout(&conn.url).await?;
    if conn.output == Output::Json {
        out!("{}", json!({ "signed_out": ended }));
    } else if ended {
        out!("signed out of {}", conn.url);
    } else {
        out!("no stored session for {}", conn.url);
    }
    Ok(())
}
