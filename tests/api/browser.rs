//! The live page in a real browser: starts a migrated service and runs
//! `tests/api/browser/test_live_page.py` (Playwright for Python driving Debian's chromium)
//! against it. Skips, loudly, only where chromium or Playwright is missing and `CI` is unset;
//! `.ci/run` installs both, so CI never skips.

use crate::common;

use std::path::Path;

use common::service::start_migrated;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn playwright_installed() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_in_chromium() {
    let missing: Vec<&str> = [
        (!Path::new(&chromium()).is_file()).then_some("chromium (apt-get install chromium)"),
        (!playwright_installed()).then_some("Playwright for Python (pip install playwright)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install {missing:?} (see .ci/run)"
        );
        common::skip_loudly(
            "live_page_in_chromium",
            &format!(
                "the browser test did not run: missing {}",
                missing.join(", ")
            ),
        );
        return;
    }

    let service = start_migrated(|_| {}).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/browser/test_live_page.py");
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}/", service.addr))
        .env("CHROMIUM", chromium())
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
