//! `[[retention]]`: how long each class of audit event is kept, and whether it is archived or
//! deleted then.

use jitgate_audit::retention::{CLASSES, RetentionAction, Rule};

use super::check::{Check, Seg, with};
use super::raw::RawRetention;

pub(super) fn rules(c: &mut Check, raw: &[RawRetention]) -> Vec<Rule> {
    let mut retention: Vec<Rule> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = vec![Seg::Key("retention"), Seg::Index(i)];
        let classes = CLASSES;
        if !classes.contains(&r.class.as_str()) {
            c.add(
                with(&path, Seg::Key("class")),
                format!(
                    "{:?} is not an event class; use one of {}",
                    r.class,
                    classes.join(", ")
                ),
            );
        } else if retention.iter().any(|x| x.class == r.class) {
            c.add(
                with(&path, Seg::Key("class")),
                format!("class {:?} already has a rule", r.class),
            );
        }
        let action = match r.action.as_str() {
            "archive" => RetentionAction::Archive,
            "delete" => RetentionAction::Delete,
            other => {
                c.add(
                    with(&path, Seg::Key("action")),
                    format!("{other:?} is not a retention action; use \"archive\" or \"delete\""),
                );
                RetentionAction::Archive
            }
        };
        retention.push(Rule {
            class: r.class.clone(),
            keep: c.duration(with(&path, Seg::Key("keep")), &r.keep),
            action,
        });
    }
    retention
}
