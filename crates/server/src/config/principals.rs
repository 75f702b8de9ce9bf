//! `[[principals]]`: local identities and the digests of their API tokens.

use std::collections::{HashMap, HashSet};

use jitgate_core::Principal;

use super::PrincipalEntry;
use super::check::{Check, Seg, with};
use super::raw::RawPrincipal;

pub(super) fn principals(c: &mut Check, raw: &[RawPrincipal]) -> Vec<PrincipalEntry> {
    let mut principals = Vec::new();
    let mut names = HashSet::new();
    let mut digests = HashMap::new();
    for (i, p) in raw.iter().enumerate() {
        let path = vec![Seg::Key("principals"), Seg::Index(i)];
        if p.name.trim().is_empty() || p.name.contains(':') || p.name.chars().any(char::is_control)
        {
            c.add(
                with(&path, Seg::Key("name")),
                format!(
                    "{:?} is not a valid principal name (non-empty, no ':' or control characters)",
                    p.name
                ),
            );
        }
        if !names.insert(p.name.clone()) {
            c.add(
                with(&path, Seg::Key("name")),
                format!("principal {:?} is defined twice", p.name),
            );
        }
        let token_sha256 = p.token_sha256.as_deref().and_then(|hexed| {
            let bytes = hex::decode(hexed.trim()).ok().filter(|b| b.len() == 32);
            let digest: Option<[u8; 32]> = bytes.and_then(|b| b.try_into().ok());
            match digest {
                None => {
                    c.add(
                        with(&path, Seg::Key("token_sha256")),
                        "must be 64 hex digits (the SHA-256 printed by `jitgate token new`)",
                    );
                    None
                }
                Some(d) => {
                    if let Some(other) = digests.insert(d, p.name.clone()) {
                        c.add(
                            with(&path, Seg::Key("token_sha256")),
                            format!("the same token digest is already used by principal {other:?}"),
                        );
                    }
                    Some(d)
                }
            }
        });
        principals.push(PrincipalEntry {
            principal: Principal {
                name: p.name.clone(),
                kind: p.kind,
                groups: p.groups.clone(),
            },
            token_sha256,
        });
    }
    principals
}
