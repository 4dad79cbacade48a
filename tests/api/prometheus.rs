//! Monitoring checked by the real programs: `promtool check metrics` on a live `/metrics`,
//! and a real Prometheus scraping two live services, with `deploy/prometheus/alerts.yml`
//! loaded, answering a query through its HTTP API. (`promtool check rules` and `promtool
//! test rules` on `deploy/prometheus/` run in `.ci/run`.)

use crate::common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http::{get, send_as_is};
use common::process::{Program, Spec, free_port, temp_dir};
use common::service::start_migrated;

#[tokio::test]
#[cfg_attr(
    skip_promtool,
    ignore = "SKIPPED: needs promtool: apt-get install prometheus"
)]
async fn promtool_finds_nothing_to_fix_in_a_live_metrics_page() {
    let promtool = common::programs::path("promtool");
    let service = start_migrated(|_| {}).await;
    // Some traffic first, so that the labelled families have series.
    assert_eq!(get(service.addr, "/notes").await.status, 200);
    assert_eq!(get(service.addr, "/no-such-page").await.status, 404);
    let metrics = get(service.addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for name in [
        "pgbridge_http_requests_total",
        "pgbridge_db_pool_max_connections",
        "pgbridge_db_read_only_errors_total",
        "pgbridge_db_connections_lost_total",
        "pgbridge_events_listener_up",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }

    let mut promtool = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = promtool.wait_with_output().expect("promtool's answer");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
#[cfg_attr(
    skip_prometheus,
    ignore = "SKIPPED: needs prometheus: apt-get install prometheus"
)]
async fn a_real_prometheus_scrapes_two_replicas_and_answers_a_query() {
    let prometheus = common::programs::path("prometheus");
    let first = start_migrated(|_| {}).await;
    let second = start_migrated(|_| {}).await;
    let dir = temp_dir("prometheus", None);
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    std::fs::copy(deploy.join("alerts.yml"), dir.join("alerts.yml")).expect("copy alerts.yml");
    // deploy/prometheus/prometheus.yml, with the live services as targets and a short
    // scrape interval.
    let config = std::fs::read_to_string(deploy.join("prometheus.yml"))
        .expect("deploy/prometheus/prometheus.yml")
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace(
            r#"["app1:8080", "app2:8080", "app3:8080"]"#,
            &format!(r#"["{}", "{}"]"#, first.addr, second.addr),
        );
    assert!(config.contains(&first.addr.to_string()), "{config}");
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");

    let port = free_port();
    let prometheus = Program::start(Spec {
        name: "prometheus",
        program: &prometheus,
        args: vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        env: vec![],
        user: None,
        log: dir.join("prometheus.log"),
        stop_signal: "TERM",
        cleanup: Some(&dir),
    });
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    common::process::wait_for_port(port, Duration::from_secs(30), "prometheus").await;

    let query = |q: &str| {
        let path = format!(
            "/api/v1/query?query={}",
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
        );
        async move {
            let request = http::Request::get(path)
                .body(String::new())
                .expect("request");
            match send_as_is(api, request).await {
                Ok(reply) if reply.status == 200 => reply.json(),
                _ => serde_json::Value::Null,
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut instances: Vec<String>;
    loop {
        let answer = query(r#"pgbridge_db_pool_max_connections{job="pgbridge"}"#).await;
        instances = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| series["metric"]["instance"].as_str().map(String::from))
            .collect();
        instances.sort();
        if instances.len() == 2 {
            let value = &answer["data"]["result"][0]["value"][1];
            assert_eq!(value, "16", "the pool's default size: {answer}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape both services within 60 s: {answer}\n{}",
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut expected = vec![first.addr.to_string(), second.addr.to_string()];
    expected.sort();
    assert_eq!(instances, expected);

    // The alert rules loaded (every one in the file), and are evaluated without error.
    let in_file = std::fs::read_to_string(dir.join("alerts.yml"))
        .expect("read alerts.yml")
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    assert!(in_file >= 10, "alerts.yml lists {in_file} alerts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = http::Request::get("/api/v1/rules")
            .body(String::new())
            .expect("request");
        let rules = send_as_is(api, request)
            .await
            .map(|reply| reply.json())
            .unwrap_or_default();
        let loaded = rules["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let evaluated_ok = loaded.iter().filter(|rule| rule["health"] == "ok").count();
        if loaded.len() == in_file && evaluated_ok == in_file {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alert rules did not all load and evaluate: {rules}\n{}",
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prometheus);
}
