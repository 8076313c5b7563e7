//! `deploy init`: deployment templates for the user's binary (Dockerfile, docker compose with
//! Temporal on PostgreSQL, Kubernetes manifests with KEDA autoscaling, a systemd unit, Prometheus
//! and Grafana), written with its name, task queue and ports filled in.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{EXIT_ERROR, EXIT_USAGE, Failure, program};

/// The port of `worker --metrics` in the templates.
pub const METRICS_PORT: u16 = 9464;

/// The templates, by the path they are written to.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("Dockerfile", include_str!("templates/Dockerfile")),
    (
        "docker-compose.yml",
        include_str!("templates/docker-compose.yml"),
    ),
    ("prometheus.yml", include_str!("templates/prometheus.yml")),
    (
        "grafana/dashboards/flock.json",
        include_str!("templates/grafana/dashboards/flock.json"),
    ),
    (
        "grafana/provisioning/dashboards/flock.yml",
        include_str!("templates/grafana/provisioning/dashboards/flock.yml"),
    ),
    (
        "grafana/provisioning/datasources/prometheus.yml",
        include_str!("templates/grafana/provisioning/datasources/prometheus.yml"),
    ),
    (
        "k8s/deployment.yaml",
        include_str!("templates/k8s/deployment.yaml"),
    ),
    (
        "k8s/service.yaml",
        include_str!("templates/k8s/service.yaml"),
    ),
    (
        "k8s/keda-scaledobject.yaml",
        include_str!("templates/k8s/keda-scaledobject.yaml"),
    ),
    (
        "systemd/worker.service",
        include_str!("templates/systemd/worker.service"),
    ),
];

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// Where to write them (relative to the workspace root, for the Dockerfile's build context).
    #[arg(long, default_value = "deploy")]
    dir: PathBuf,
    /// The binary's name; default: this binary's.
    #[arg(long)]
    bin: Option<String>,
    /// The task queue the worker serves.
    #[arg(long, default_value = "flock-queue")]
    queue: String,
    /// The worker's grace period in seconds (the container's stop timeout is 10 s more).
    #[arg(long, default_value_t = 30)]
    grace_seconds: u64,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

/// The templates filled in: (relative path, text).
pub fn render(bin: &str, queue: &str, dir: &str, grace_seconds: u64) -> Vec<(String, String)> {
    TEMPLATES
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace("{{bin}}", bin)
                .replace("{{queue}}", queue)
                .replace("{{dir}}", dir)
                .replace("{{metrics_port}}", &METRICS_PORT.to_string())
                .replace("{{grace}}", &grace_seconds.to_string())
                .replace("{{stop_grace}}", &(grace_seconds + 10).to_string());
            let path = if *path == "systemd/worker.service" {
                format!("systemd/{bin}-worker.service")
            } else {
                (*path).to_owned()
            };
            (path, text)
        })
        .collect()
}

pub(super) fn init(args: &InitArgs) -> Result<(), Failure> {
    let bin = args.bin.clone().unwrap_or_else(program);
    let dir = args.dir.to_string_lossy().into_owned();
    let files = render(&bin, &args.queue, &dir, args.grace_seconds);
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .map(|(path, _)| args.dir.join(path))
            .filter(|path| path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(Failure {
                code: EXIT_USAGE,
                message: format!(
                    "these files exist already: {}; pass --force to overwrite them",
                    existing.join(", ")
                ),
            });
        }
    }
    for (path, text) in &files {
        write(&args.dir.join(path), text)?;
        eprintln!("wrote {}", args.dir.join(path).display());
    }
    eprintln!(
        "next: docker compose -f {dir}/docker-compose.yml up --build (Temporal Web UI on :8080, Grafana on :3000)"
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure {
        code: EXIT_ERROR,
        message: format!("cannot write {}: {e}", path.display()),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, text).map_err(failed)
}
