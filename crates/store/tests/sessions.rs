//! Sessions and used JWT ids in the SQLite store.

use std::time::Duration;

use jitgate_audit::EventFilter;
use jitgate_core::{EventDraft, Principal, Timestamp, duration};
use jitgate_store::{
    AuditStore, AuthSession, SessionBody, SessionKey, SqliteStore, Store, UsedJti,
};

fn t0() -> Timestamp {
    "2026-03-01T10:00:00Z".parse().unwrap()
}

fn session(id: &str, who: &str, digest: u8, ttl: Duration) -> AuthSession {
    AuthSession {
        id: id.into(),
        digest: [digest; 32],
        body: SessionBody {
            principal: Principal::service(who, &["ci"]),
            source: "jwt:github-actions".into(),
            claims: serde_json::json!({"run_id": "42"}),
        },
        created_at: t0(),
        expires_at: duration::add(t0(), ttl),
        ended_at: None,
    }
}

fn jti(j: &str) -> Option<UsedJti> {
    Some(UsedJti {
        provider: "github-actions".into(),
        jti: j.into(),
        expires_at: duration::add(t0(), Duration::from_secs(300)),
    })
}

fn issued(who: &str) -> Vec<EventDraft> {
    vec![EventDraft::new(t0(), who, "auth.token_issued")]
}

#[tokio::test]
async fn a_jti_is_accepted_once_and_sessions_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let store = SqliteStore::open(&path).unwrap();
    let s = session("ses_a", "acme/api", 1, Duration::from_secs(900));
    assert!(
        store
            .insert_session(s.clone(), jti("j1"), issued("acme/api"))
            .await
            .unwrap()
    );
    // The same jti again: refused, and neither the session nor its event is written.
    let again = session("ses_b", "acme/api", 2, Duration::from_secs(900));
    assert!(
        !store
            .insert_session(again, jti("j1"), issued("acme/api"))
            .await
            .unwrap()
    );
    assert_eq!(store.session([2; 32]).await.unwrap(), None);
    let events = store
        .search_events(EventFilter {
            action: Some("auth.token_issued".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    drop(store);
    // Both the session and the used jti survive a restart.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.session([1; 32]).await.unwrap(), Some(s));
    let replay = session("ses_c", "acme/api", 3, Duration::from_secs(900));
    assert!(
        !store
            .insert_session(replay, jti("j1"), vec![])
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn ending_sessions_by_token_and_by_principal_writes_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let ttl = Duration::from_secs(3600);
    for (id, who, d) in [
        ("ses_1", "alice", 1),
        ("ses_2", "alice", 2),
        ("ses_3", "bob", 3),
    ] {
        store
            .insert_session(session(id, who, d, ttl), None, vec![])
            .await
            .unwrap();
    }
    let now = duration::add(t0(), Duration::from_secs(60));
    assert_eq!(store.live_sessions(None, now).await.unwrap().len(), 3);

    let ended = store
        .end_sessions(
            SessionKey::Digest([1; 32]),
            now,
            Box::new(|s| {
                s.iter()
                    .map(|s| EventDraft::new(t0(), &s.body.principal.name, "auth.signed_out"))
                    .collect()
            }),
        )
        .await
        .unwrap();
    assert_eq!(ended.len(), 1);
    let gone = store.session([1; 32]).await.unwrap().unwrap();
    assert!(!gone.live_at(now));
    assert_eq!(gone.ended_at, Some(now));

    let ended = store
        .end_sessions(
            SessionKey::Principal("alice".into()),
            now,
            Box::new(|_| vec![]),
        )
        .await
        .unwrap();
    assert_eq!(
        ended.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["ses_2"]
    );
    let live = store.live_sessions(None, now).await.unwrap();
    assert_eq!(
        live.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["ses_3"]
    );
    // Expired sessions are not live, and ending them again ends nothing.
    let later = duration::add(t0(), Duration::from_secs(7200));
    assert!(
        store
            .live_sessions(Some("bob".into()), later)
            .await
            .unwrap()
            .is_empty()
    );
    let ended = store
        .end_sessions(SessionKey::Id("ses_3".into()), later, Box::new(|_| vec![]))
        .await
        .unwrap();
    assert!(ended.is_empty());
}
