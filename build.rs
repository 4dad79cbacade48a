//! Embeds `migrations/*.sql` into the binary, so the service always carries the schema
//! its code expects (`pgbridge::db::migrate::EMBEDDED`), and looks for the programs some
//! integration tests need (`tests/api/common/programs.rs`): a missing one sets the cfg
//! `skip_<name>`, which marks those tests ignored with a `SKIPPED: …` reason (not under `CI`).

use std::fmt::Write as _;
use std::path::Path;

#[allow(dead_code)]
#[path = "tests/api/common/programs.rs"]
mod programs;

fn main() {
    probe_test_programs();
    embed_migrations();
}

/// Sets `skip_<name>` for each program of `programs::PROGRAMS` this machine lacks, unless `CI`
/// is set (there a missing program fails its tests). Cargo reruns this when `CI` changes or
/// when any searched directory changes (a program installed later is noticed).
fn probe_test_programs() {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-changed=tests/api/common/programs.rs");
    for dir in programs::search_dirs() {
        if dir.is_dir() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    // tests/api/embedded.rs has a test of what only root sees (the cluster run as `postgres`).
    println!("cargo::rustc-check-cfg=cfg(not_root)");
    if !programs::effective_uid_is_root() {
        println!("cargo::rustc-cfg=not_root");
    }
    let ci = std::env::var_os("CI").is_some();
    for program in programs::PROGRAMS {
        let cfg = programs::skip_cfg(program);
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if !ci && programs::find(program.name).is_none() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

fn embed_migrations() {
    println!("cargo:rerun-if-changed=migrations");
    let dir =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("migrations");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut code = String::from("&[\n");
    for name in &files {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    code.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets it")).join("migrations.rs");
    std::fs::write(out, code).expect("write migrations.rs");
}
