//! The live page in a real browser: starts a migrated service and runs
//! `tests/api/browser/test_live_page.py` (Playwright for Python driving Debian's chromium)
//! against it. Ignored, with a `SKIPPED` reason, where chromium or Playwright is missing and
//! `CI` is unset (`tests/api/common/programs.rs`); `.ci/run` installs both.

use crate::common;

use std::path::Path;

use common::programs;
use common::service::start_migrated;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(skip_chromium, skip_playwright),
    ignore = "SKIPPED: needs chromium and Playwright for Python: apt-get install chromium; pip install playwright"
)]
async fn live_page_in_chromium() {
    let chromium = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| programs::path("chromium"));
    let python = programs::path("playwright");

    let service = start_migrated(|_| {}).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/browser/test_live_page.py");
    let run = tokio::process::Command::new(python)
        .arg(&script)
        .arg(format!("http://{}/", service.addr))
        .env("CHROMIUM", chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), run)
        .await
        .expect("the browser test finished within 180 s")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
}
