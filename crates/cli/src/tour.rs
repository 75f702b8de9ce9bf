//! The demo's guided tour: printed by `jitgate demo` and shown in the README, from this one
//! source (a test checks the README against it).

/// One step: what it shows, and the commands a person types.
struct Step {
    say: &'static str,
    run: &'static [&'static str],
    /// Only where the demo has a real PostgreSQL database.
    needs_database: bool,
}

/// Windows are long enough to type the tour by hand: 30 minutes for alice, whose steps take the
/// longest; 2 minutes for the CI job, whose point is to watch a grant end by itself.
const STEPS: &[Step] = &[
    Step {
        say: "what may alice ask for? each role, its cap, and who approves",
        run: &["JITGATE_TOKEN=$ALICE_TOKEN $J access list"],
        needs_database: false,
    },
    Step {
        say: "alice asks to read orders-db; the policy routes it to a DBA",
        run: &[
            r#"JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role read --duration 30m --reason "INC-4411 check orders""#,
        ],
        needs_database: false,
    },
    Step {
        say: "dora sees what awaits her and approves it; the 30 minutes start now, not at the request",
        run: &[
            "JITGATE_TOKEN=$DORA_TOKEN $J request list --state pending",
            r#"JITGATE_TOKEN=$DORA_TOKEN $J request approve REQUEST_ID --comment "ok for INC-4411""#,
        ],
        needs_database: false,
    },
    Step {
        say: "alice's grant is a real login of her own, which can read orders and nothing more",
        run: &[
            r#"eval "$(JITGATE_TOKEN=$ALICE_TOKEN $J credentials orders-db -o env | sed 's/^/export /')""#,
            r#"psql -c "select id, customer, total from orders""#,
            r#"psql -c "delete from orders"              # refused: the read role cannot delete"#,
        ],
        needs_database: true,
    },
    Step {
        say: "or through the jitgate gateway, which records every statement (audit search --action 'session.*')",
        run: &[
            r#"JITGATE_TOKEN=$ALICE_TOKEN $J connect orders-db --exec -- -c "select count(*) from orders""#,
        ],
        needs_database: true,
    },
    Step {
        say: "alice asks for 30 more minutes (dora approves it the same way), then says she is done",
        run: &[
            "JITGATE_TOKEN=$ALICE_TOKEN $J grant list --active",
            r#"JITGATE_TOKEN=$ALICE_TOKEN $J grant extend GRANT_ID --duration 30m --reason "almost there""#,
            "JITGATE_TOKEN=$DORA_TOKEN  $J request approve REQUEST_ID",
            "JITGATE_TOKEN=$ALICE_TOKEN $J grant release GRANT_ID",
        ],
        needs_database: false,
    },
    Step {
        say: "her login is gone, and so are its sessions",
        run: &[r#"psql -c "select 1"                          # fails now"#],
        needs_database: true,
    },
    Step {
        say: "refusals say which rule refused (too long; admin without a ticket), and are audited too",
        run: &[
            "JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role read --duration 8h --reason x",
            "JITGATE_TOKEN=$ALICE_TOKEN $J request create --resource orders-db --role admin --duration 10m --reason x",
        ],
        needs_database: false,
    },
    Step {
        say: "oscar is on call: approved at once, and the audit event names the rule",
        run: &[
            r#"JITGATE_TOKEN=$OSCAR_TOKEN $J request create --resource orders-db --role read --duration 15m --reason "pager: slow orders""#,
        ],
        needs_database: false,
    },
    Step {
        say: "the CI job gets 2 minutes of deploy rights with no human in the loop, and loses them by itself",
        run: &[
            "JITGATE_TOKEN=$CI_BOT_TOKEN $J request create --resource orders-db --role deploy --duration 2m -o json",
        ],
        needs_database: false,
    },
    Step {
        say: "the whole story, as the auditor sees it; then proof that nobody edited or cut it",
        run: &[
            "JITGATE_TOKEN=$ROOT_TOKEN $J audit search",
            "$J audit verify --config CONFIG",
        ],
        needs_database: false,
    },
];

/// The tour as shell lines: `env` is the demo's env file, `exe` the jitgate binary, `config`
/// the demo's config file. Steps that need a database are left out without one.
pub fn render(env: &str, exe: &str, config: &str, with_database: bool) -> String {
    let mut out = format!(
        "source {env}            # JITGATE_URL and one token per demo principal\nJ={exe}\n"
    );
    for step in STEPS.iter().filter(|s| with_database || !s.needs_database) {
        out.push_str(&format!("\n# {}\n", step.say));
        for line in step.run {
            out.push_str(&line.replace("CONFIG", config));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's tour is this tour, as a reader of the README runs it.
    #[test]
    fn the_readme_shows_the_tour_the_demo_prints() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("## Five-minute tour")
            .expect("the README has a tour");
        let block = &readme[start..];
        let open = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
        let close = block[open..].find("```").expect("the block ends") + open;
        let want = render(
            "./jitgate-demo/demo.env",
            "./target/release/jitgate",
            "./jitgate-demo/jitgate.toml",
            true,
        );
        assert!(
            block[open..close] == want,
            "README.md's tour differs from the demo's; put this in its sh block:\n{want}"
        );
    }

    #[test]
    fn without_a_database_the_tour_skips_what_needs_one() {
        let t = render("e", "j", "c", false);
        assert!(
            !t.contains("psql") && !t.contains("connect orders-db"),
            "{t}"
        );
        assert!(t.contains("grant release") && t.contains("audit verify --config c"));
    }
}
