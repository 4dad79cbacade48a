//! A private nginx running `deploy/nginx.conf` in front of local replicas.

use std::path::PathBuf;
use std::time::Duration;

use super::process::{Program, Spec, free_port, temp_dir, wait_for_port};
use super::programs;

/// A running nginx.
pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    pub program: Program,
}

/// `deploy/nginx.conf` with the replica lines replaced by `replicas`, the listen line by a
/// loopback port, and pid, logs and temp files in `dir`. Everything else is as deployed.
pub fn config(replicas: &[u16], port: u16, dir: &std::path::Path) -> String {
    let deployed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
            .expect("read deploy/nginx.conf");
    let mut out = String::new();
    let mut replaced = false;
    for line in deployed.lines() {
        if line.contains("# replica") {
            if !replaced {
                for replica in replicas {
                    out.push_str(&format!(
                        "        server 127.0.0.1:{replica} max_fails=1 fail_timeout=3s;\n"
                    ));
                }
                replaced = true;
            }
        } else if line.contains("# listen") {
            out.push_str(&format!("        listen 127.0.0.1:{port};\n"));
        } else if line.starts_with("worker_processes") {
            out.push_str("worker_processes 1;\n");
        } else if line.contains("# pid") {
            out.push_str(&format!("pid {}/nginx.pid;\n", dir.display()));
        } else if line.contains("# error_log") {
            out.push_str(&format!("error_log {}/error.log warn;\n", dir.display()));
        } else if line.trim() == "http {" {
            out.push_str(line);
            out.push('\n');
            for (directive, sub) in [
                ("client_body_temp_path", "body"),
                ("proxy_temp_path", "proxy"),
                ("fastcgi_temp_path", "fastcgi"),
                ("uwsgi_temp_path", "uwsgi"),
                ("scgi_temp_path", "scgi"),
            ] {
                out.push_str(&format!("    {directive} {}/{sub};\n", dir.display()));
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(replaced, "deploy/nginx.conf has no '# replica' lines");
    out
}

impl Nginx {
    /// nginx on a free loopback port in front of the replicas listening on `replicas`.
    pub async fn start(replicas: &[u16]) -> Nginx {
        let dir = temp_dir("nginx", None);
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(replicas, port, &dir)).expect("write nginx.conf");
        let program = Program::start(Spec {
            name: "nginx",
            program: &programs::path("nginx"),
            args: vec![
                "-p".into(),
                dir.display().to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-g".into(),
                "daemon off;".into(),
            ],
            env: vec![],
            user: None,
            log: dir.join("stderr.log"),
            stop_signal: "TERM",
            cleanup: Some(&dir),
        });
        wait_for_port(port, Duration::from_secs(10), "nginx").await;
        Nginx { port, dir, program }
    }

    /// nginx's error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}
