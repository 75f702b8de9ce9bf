//! `jitgate-bench policy`: the `policy who-can` matrix over 1,000 principals, 200 resources
//! (3 roles each) and 100 policies, the target being ≤ 1 s. The baseline, in the same
//! run, is core's per-cell `reach` over every policy (what a naive matrix does), timed on a
//! sample of rows and scaled up; the sample's cells must equal the matrix's.

use std::time::Instant;

use jitgate_core::policy_reach::reach;
use jitgate_server::Config;
use jitgate_server::policy_matrix::{grid, subjects, targets};

/// The generated config: principals in 3 of 50 teams, 20 services of 10 databases each, and
/// policies per team with an approval rule, an auto-approve rule and (one in five) break-glass.
fn config_text(principals: usize, resources: usize, policies: usize) -> String {
    let mut s = String::new();
    for i in 0..principals {
        let t = |k: usize| format!("\"team{}\"", (i * 7 + k * 13) % 50);
        s += &format!(
            "[[principals]]\nname = \"user{i}\"\ngroups = [{}, {}, {}]\n\n",
            t(0),
            t(1),
            t(2)
        );
    }
    for r in 0..resources {
        s += &format!(
            "[[resources]]\nname = \"svc{}-db{r}\"\nkind = \"none\"\n[resources.roles.read]\n[resources.roles.write]\n[resources.roles.admin]\n\n",
            r % 20
        );
    }
    for p in 0..policies {
        let team = p % 50;
        s += &format!(
            "[[policies]]\nname = \"p{p}\"\nprincipals = [\"group:team{team}\", \"user:user{p}\"]\nresources = [\"svc{}-*\"]\nroles = [\"{}\"]\nmax_duration = \"{}h\"\n[policies.approval]\napprovers = [\"group:team{}\"]\nrequired = {}\n[[policies.auto_approve]]\nname = \"quick\"\nprincipals = [\"group:team{}\"]\nmax_duration = \"30m\"\n",
            p % 20,
            ["read", "write", "admin"][p % 3],
            1 + p % 8,
            (team + 1) % 50,
            p % 3,
            (team + 2) % 50,
        );
        if p % 5 == 0 {
            s += &format!(
                "[policies.break_glass]\nprincipals = [\"group:team{team}\"]\nmax_duration = \"1h\"\n"
            );
        }
        s += "\n";
    }
    s
}

pub fn run(principals: usize, resources: usize, policies: usize) -> anyhow::Result<()> {
    let config = Config::parse(&config_text(principals, resources, policies), "bench.toml")?;
    let labels = subjects(&[&config]);
    let targets = targets(&[&config]);
    let cells = labels.len() * targets.len();
    let mut runs = Vec::new();
    let mut m = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        m = grid(&config, &labels, &targets);
        runs.push(t.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    let with_access = m.iter().flatten().filter(|c| !c.is_none()).count();
    // Baseline: every policy judged per cell, on a sample of rows, scaled to all rows.
    let sample: Vec<usize> = (0..labels.len())
        .step_by(labels.len().div_ceil(20))
        .collect();
    let t = Instant::now();
    for &i in &sample {
        let who = jitgate_server::policy_matrix::subject(&config, &labels[i]);
        for (j, (r, x)) in targets.iter().enumerate() {
            let naive = reach(&config.policies, &who, r, x);
            anyhow::ensure!(
                naive == m[i][j],
                "the matrix differs from reach at {} {r}/{x}",
                labels[i]
            );
        }
    }
    let baseline = t.elapsed().as_secs_f64() * labels.len() as f64 / sample.len() as f64;
    println!(
        "policy who-can: {} rows x {} resource/roles ({cells} cells, {with_access} with access), {} policies",
        labels.len(),
        targets.len(),
        config.policies.len()
    );
    println!(
        "matrix: median {:.1} ms of 5 runs (min {:.1}, max {:.1}); per-cell reach over every policy: {:.0} ms (x{:.0})",
        median * 1e3,
        runs[0] * 1e3,
        runs[runs.len() - 1] * 1e3,
        baseline * 1e3,
        baseline / median
    );
    println!(
        "policy_matrix_ms={:.1} naive_ms={:.0} cells={cells} target_met={}",
        median * 1e3,
        baseline * 1e3,
        median <= 1.0
    );
    Ok(())
}
