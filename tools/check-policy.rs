//! `make check-policy FILE=…`: parse a Cedar policy set and validate it
//! against the shipped schema exactly as run-api loads it (`src/authz`),
//! then print its policy ids. Exit 0 when run-api would use it, 1 when it
//! would fail closed (denying every request), 2 on a usage error.

use std::process::ExitCode;

use mwaa_stop::authz::Policies;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file] = args.as_slice() else {
        eprintln!("usage: check-policy FILE (a Cedar policy set)");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("check-policy: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    match Policies::parse(&text) {
        Ok(policies) => {
            println!(
                "check-policy: {file}: valid against the schema ({} policies: {}; parsed and validated in {:?})",
                policies.ids().len(),
                policies.ids().join(", "),
                started.elapsed()
            );
            if !policies.permits_anything() {
                println!("check-policy: note: no permit policy: alone, this set denies every request");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("check-policy: {file}: {e}");
            eprintln!("check-policy: run-api would deny every request with this set (fail closed)");
            ExitCode::from(1)
        }
    }
}
