//! `[[resources]]`: what may be requested, and how jitgate reaches its target.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::check::{Check, KeyPath, Seg, with};
use super::raw::RawResource;
use super::{Resource, ResourceKind, Secret, Target};

pub(super) fn resources(c: &mut Check, raw: Vec<RawResource>, base: &Path) -> Vec<Resource> {
    let mut resources = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let path = vec![Seg::Key("resources"), Seg::Index(i)];
        if r.name.trim().is_empty()
            || r.name
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            c.add(
                with(&path, Seg::Key("name")),
                format!(
                    "{:?} is not a valid resource name (non-empty, no spaces)",
                    r.name
                ),
            );
        }
        if !names.insert(r.name.clone()) {
            c.add(
                with(&path, Seg::Key("name")),
                format!("resource {:?} is defined twice", r.name),
            );
        }
        let kind = kind(c, &path, &r, base);
        if r.roles.is_empty() {
            c.add(
                with(&path, Seg::Key("roles")),
                "a resource needs at least one role ([resources.roles.NAME])",
            );
        }
        resources.push(Resource {
            name: r.name,
            kind,
            description: r.description,
            roles: r.roles,
        });
    }
    resources
}

/// The kind of a resource, with the connection settings it takes.
fn kind(c: &mut Check, path: &KeyPath, r: &RawResource, base: &Path) -> ResourceKind {
    match r.kind.as_str() {
        "none" => {
            let extra = [
                ("admin_url", r.admin_url.is_some()),
                ("admin_url_env", r.admin_url_env.is_some()),
                ("admin_url_file", r.admin_url_file.is_some()),
                ("owner_role", r.owner_role.is_some()),
            ];
            for (key, set) in extra {
                if set {
                    c.add(
                        with(path, Seg::Key(key)),
                        "only postgres and mysql resources take a connection; kind \"none\" creates nothing in a target",
                    );
                }
            }
            ResourceKind::None
        }
        "postgres" => match r.provisioning.as_deref().unwrap_or("per_grant") {
            "per_grant" => ResourceKind::Postgres(target(c, path, r, base)),
            "none" => {
                if r.admin_url.is_some() || r.admin_url_env.is_some() || r.admin_url_file.is_some()
                {
                    c.add(
                        path.clone(),
                        "with provisioning = \"none\" jitgate creates no logins: set upstream_url*, not admin_url*",
                    );
                }
                let url = secret_url(
                    c,
                    path,
                    base,
                    ["upstream_url", "upstream_url_env", "upstream_url_file"],
                    (&r.upstream_url, &r.upstream_url_env, &r.upstream_url_file),
                );
                ResourceKind::PostgresShared(Secret(url))
            }
            other => {
                c.add(
                    with(path, Seg::Key("provisioning")),
                    format!("{other:?} is not a provisioning mode; use \"per_grant\" or \"none\""),
                );
                ResourceKind::None
            }
        },
        "mysql" => {
            if r.owner_role.is_some() {
                c.add(
                    with(path, Seg::Key("owner_role")),
                    "MariaDB/MySQL objects have no owner to reassign; remove owner_role",
                );
            }
            ResourceKind::Mysql(target(c, path, r, base))
        }
        other => {
            c.add(
                with(path, Seg::Key("kind")),
                format!("unknown resource kind {other:?}; one of: none, postgres, mysql"),
            );
            ResourceKind::None
        }
    }
}

/// The connection settings of a postgres or mysql resource; the admin URL from exactly one of
/// `admin_url`, `admin_url_env` (an environment variable) or `admin_url_file`.
fn target(c: &mut Check, path: &KeyPath, r: &RawResource, base: &Path) -> Target {
    if r.upstream_url.is_some() || r.upstream_url_env.is_some() || r.upstream_url_file.is_some() {
        c.add(
            path.clone(),
            "upstream_url* is for postgres resources with provisioning = \"none\"",
        );
    }
    let url = secret_url(
        c,
        path,
        base,
        ["admin_url", "admin_url_env", "admin_url_file"],
        (&r.admin_url, &r.admin_url_env, &r.admin_url_file),
    );
    let prefix = r.role_prefix.clone().unwrap_or_else(|| "jit_".into());
    if prefix.is_empty()
        || prefix.len() > 12
        || !prefix
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
    {
        c.add(
            with(path, Seg::Key("role_prefix")),
            "must be 1 to 12 characters of a-z, 0-9 and _",
        );
    }
    Target {
        admin_url: Secret(url),
        owner_role: r.owner_role.clone(),
        databases: r.databases.clone(),
        client_host: r.client_host.clone(),
        client_port: r.client_port,
        role_prefix: prefix,
    }
}

/// A secret URL given as exactly one of its three keys: inline, an environment variable, or a
/// file (relative to the config file).
fn secret_url(
    c: &mut Check,
    path: &KeyPath,
    base: &Path,
    [name, env_key, file_key]: [&'static str; 3],
    (inline, env, file): (&Option<String>, &Option<String>, &Option<PathBuf>),
) -> String {
    match (inline, env, file) {
        (Some(url), None, None) => url.clone(),
        (None, Some(var), None) => std::env::var(var).unwrap_or_else(|_| {
            c.add(
                with(path, Seg::Key(env_key)),
                format!("environment variable {var} is not set"),
            );
            String::new()
        }),
        (None, None, Some(f)) => {
            let f = if f.is_relative() {
                base.join(f)
            } else {
                f.clone()
            };
            std::fs::read_to_string(&f)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| {
                    c.add(
                        with(path, Seg::Key(file_key)),
                        format!("cannot read {}: {e}", f.display()),
                    );
                    String::new()
                })
        }
        (None, None, None) => {
            c.add(
                path.clone(),
                format!("this resource needs {name}, {name}_env or {name}_file"),
            );
            String::new()
        }
        _ => {
            c.add(
                path.clone(),
                format!("set only one of {name}, {name}_env, {name}_file"),
            );
            String::new()
        }
    }
}
