//! The help is the CLI's manual: every option says what it is for, lists its values where there
//! is a fixed set, and no command offers a value it refuses.

use clap::CommandFactory;

use crate::Cli;

/// Every command with its path, e.g. `jitgate audit search`.
fn commands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        let path = format!("{prefix} {}", cmd.get_name()).trim().to_owned();
        for sub in cmd.get_subcommands() {
            walk(&path, sub, out);
        }
        out.push((path, cmd.clone()));
    }
    let mut cli = Cli::command();
    cli.build();
    let mut out = Vec::new();
    walk("", &cli, &mut out);
    out
}

#[test]
fn every_option_and_argument_has_a_description() {
    let mut missing = Vec::new();
    for (path, cmd) in commands() {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path}: {id}"));
            }
        }
    }
    assert!(missing.is_empty(), "options without help: {missing:#?}");
}

#[test]
fn output_env_is_offered_only_by_credentials() {
    for (path, cmd) in commands() {
        let Some(output) = cmd.get_arguments().find(|a| a.get_id() == "output") else {
            continue;
        };
        let values: Vec<String> = output
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(
            values.iter().any(|v| v == "env"),
            path == "jitgate credentials",
            "{path}: -o {values:?}"
        );
    }
}

#[test]
fn state_and_outcome_list_their_values_and_refuse_others() {
    let help = |args: &[&str]| {
        let mut cmd = Cli::command();
        let mut sub = &mut cmd;
        for a in args {
            sub = sub.find_subcommand_mut(a).unwrap();
        }
        sub.render_long_help().to_string()
    };
    let list = help(&["request", "list"]);
    assert!(
        list.contains("pending") && list.contains("timed_out"),
        "{list}"
    );
    let search = help(&["audit", "search"]);
    assert!(
        search.contains("success") && search.contains("blocked"),
        "{search}"
    );
    for args in [
        &["jitgate", "request", "list", "--state", "pendin"][..],
        &["jitgate", "audit", "search", "--outcome", "succes"],
        &["jitgate", "audit", "export", "--outcome", "nope"],
        &["jitgate", "audit", "search", "-o", "env"],
        &["jitgate", "grant", "list", "-o", "env"],
    ] {
        let e = Cli::command().try_get_matches_from(args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{args:?}");
    }
    assert!(
        Cli::command()
            .try_get_matches_from(["jitgate", "credentials", "g1", "-o", "env"])
            .is_ok()
    );
}

#[test]
fn export_takes_the_filters_search_takes() {
    let args = |path: &[&str]| -> Vec<String> {
        let (_, cmd) = commands()
            .into_iter()
            .find(|(p, _)| p == &format!("jitgate {}", path.join(" ")))
            .unwrap();
        let mut ids: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| {
                !matches!(
                    id.as_str(),
                    "format" | "output_file" | "include_searches" | "help"
                )
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(args(&["audit", "export"]), args(&["audit", "search"]));
}
