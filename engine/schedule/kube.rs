//! The Kubernetes export: a ConfigMap holding the plan file (and the
//! overlay it is applied with) and a `batch/v1` CronJob running it — one
//! run at a time (`concurrencyPolicy: Forbid`), never retried by the Job
//! (`backoffLimit: 0`: dbmaint resumes from its journal), stopped at
//! `max_runtime` plus a margin, secrets from a Secret by reference. With
//! an inventory the Job is Indexed: pod *i* applies the plan to the *i*-th
//! selected target (`--target-index $(JOB_COMPLETION_INDEX)`), and one
//! target's failure fails its own index only (`backoffLimitPerIndex: 0`).

use serde_json::json;

use super::{Export, ScheduleError};

/// Where the container sees the plan, its logs and its working directory.
const PLAN_DIR: &str = "/etc/dbmaint/plan";
const LOG_DIR: &str = "/var/log/dbmaint";
const WORK_DIR: &str = "/var/lib/dbmaint";

/// The image's non-root user (the Dockerfile's).
const UID: u64 = 10001;

/// Both manifests, as one multi-document YAML file.
pub(super) fn manifests(e: &Export, schedule: &str) -> Result<String, ScheduleError> {
    const WHAT: &str = "Kubernetes manifest";
    let name = e.unit_name();
    let labels = json!({
        "app.kubernetes.io/name": "dbmaint",
        "app.kubernetes.io/instance": name,
    });
    // The plan file under its own name, the overlay as env/NAME.yaml beside
    // it, as `load` looks for it. ConfigMap keys cannot hold `/`.
    let file_name = e
        .plan_file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "plan.yaml".into());
    let mut files = vec![(key(&file_name), file_name.clone(), read(&e.plan_file)?)];
    if let Some(env) = &e.env {
        let overlay = e
            .plan_file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("env")
            .join(format!("{env}.yaml"));
        files.push((
            key(&format!("env.{env}.yaml")),
            format!("env/{env}.yaml"),
            read(&overlay)?,
        ));
    }
    // A fleet: the inventory beside the plan, one pod per target.
    let inventory_in_pod = format!("{PLAN_DIR}/targets.yaml");
    if let Some(f) = &e.fleet {
        files.push(("targets.yaml".into(), "targets.yaml".into(), read(&f.file)?));
    }
    let data: indexmap::IndexMap<String, serde_saphyr::LitString> = files
        .iter()
        .map(|(k, _, text)| (k.clone(), serde_saphyr::LitString(text.clone())))
        .collect();
    let config_map = ConfigMap {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: json!({"name": format!("{name}-plan"), "labels": labels}),
        data,
    };
    let items: Vec<_> = files
        .iter()
        .map(|(k, path, _)| json!({"key": k, "path": path}))
        .collect();
    let plan_in_pod = format!("{PLAN_DIR}/{file_name}");
    let args = e.apply_args_with(
        &plan_in_pod,
        LOG_DIR,
        WHAT,
        e.fleet.as_ref().map(|_| inventory_in_pod.as_str()),
    )?;
    let secret = e.secret.clone().unwrap_or_else(|| format!("{name}-secrets"));
    let work_volume = match &e.volume_claim {
        Some(claim) => json!({"name": "work", "persistentVolumeClaim": {"claimName": claim}}),
        None => json!({"name": "work", "emptyDir": {}}),
    };
    let mut job_spec = json!({
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "dbmaint",
                    "image": e.image,
                    "args": args,
                    "workingDir": WORK_DIR,
                    "envFrom": [{"secretRef": {"name": secret}}],
                    "volumeMounts": [
                        {"name": "plan", "mountPath": PLAN_DIR, "readOnly": true},
                        {"name": "logs", "mountPath": LOG_DIR},
                        {"name": "work", "mountPath": WORK_DIR},
                    ],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"memory": "256Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }],
                "volumes": [
                    {"name": "plan", "configMap": {"name": format!("{name}-plan"), "items": items}},
                    {"name": "logs", "emptyDir": {}},
                    work_volume,
                ],
            },
        },
    });
    if let (Some(deadline), Some(o)) = (e.deadline_s(), job_spec.as_object_mut()) {
        // A fleet's pods share the Job's deadline: waves of `parallelism`.
        let waves = e
            .fleet
            .as_ref()
            .map_or(1, |f| f.count.div_ceil(f.parallelism.max(1)) as u64);
        o.insert("activeDeadlineSeconds".into(), (deadline * waves).into());
    }
    if let (Some(f), Some(o)) = (&e.fleet, job_spec.as_object_mut()) {
        // Pod i applies the plan to target i; a failed target fails its own
        // index only (backoffLimitPerIndex), never the others.
        o.remove("backoffLimit");
        o.insert("completionMode".into(), "Indexed".into());
        o.insert("completions".into(), f.count.into());
        o.insert("parallelism".into(), f.parallelism.max(1).min(f.count).into());
        o.insert("backoffLimitPerIndex".into(), 0.into());
    }
    let cron_job = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedule": schedule,
            "timeZone": e.tz(),
            "concurrencyPolicy": "Forbid",
            // A run that could not start within the hour (scheduler down)
            // is skipped, not started late in the business day.
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec},
        },
    });
    let workdir_note = match &e.volume_claim {
        Some(c) => format!("# {WORK_DIR} is the PersistentVolumeClaim `{c}` (backups, archive files)."),
        None => format!(
            "# {WORK_DIR} is an emptyDir: backups and archive files written there are lost with the\n\
             # pod; give --volume-claim NAME to keep them."
        ),
    };
    Ok(format!(
        "# {header}\n\
         # The Secret `{secret}` holds the connection (DATABASE_URL, PGPASSWORD …); create it\n\
         # first: kubectl create secret generic {secret} --from-literal=DATABASE_URL=…\n\
         {workdir_note}\n\
         # Image: {image} (the repository's Dockerfile; user {UID}).\n\
         ---\n{}---\n{}",
        yaml(&config_map)?,
        yaml(&cron_job)?,
        header = e.header(schedule),
        image = e.image,
    ))
}

fn yaml<T: serde::Serialize>(v: &T) -> Result<String, ScheduleError> {
    serde_saphyr::to_string(v).map_err(|e| ScheduleError::Yaml(e.to_string()))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap {
    api_version: &'static str,
    kind: &'static str,
    metadata: serde_json::Value,
    data: indexmap::IndexMap<String, serde_saphyr::LitString>,
}

/// A ConfigMap key: `[-._a-zA-Z0-9]`.
fn key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read(path: &std::path::Path) -> Result<String, ScheduleError> {
    std::fs::read_to_string(path).map_err(|source| ScheduleError::Read {
        path: path.display().to_string(),
        source,
    })
}
