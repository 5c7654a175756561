//! Fleets: one plan over many databases. An inventory file names each
//! database once — by URL (or an environment variable holding it), or by
//! libpq fields — with an optional overlay (`env`), variables and labels
//! to select by:
//!
//! ```yaml
//! targets:
//!   app-eu:
//!     url_env: APP_EU_DATABASE_URL        # the password stays out of the file
//!     env: prod
//!     vars: { audit_log_days: 60 }
//!     labels: { region: eu, tier: prod }
//!   app-us:
//!     host: db-us.internal
//!     dbname: app
//!     user: maint
//!     sslmode: verify-full
//!     labels: { region: us, tier: prod }
//! ```
//!
//! Owns: reading and checking the inventory, choosing targets. Must not:
//! connect anywhere (the command line runs one `plan apply` per target).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::plan::values::Target;

/// Why an inventory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the inventory `{path}`: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("inventory `{path}`: {message}")]
    Invalid { path: String, message: String },
    #[error("inventory `{path}`, target `{name}`: {message}")]
    Target {
        path: String,
        name: String,
        message: String,
    },
    #[error("`--select {selector}`: write KEY=VALUE, e.g. `--select region=eu`")]
    Selector { selector: String },
    #[error("no target of `{path}` matches {selectors}")]
    NoneSelected { path: String, selectors: String },
    #[error("`--target-index {index}`: the selection has {count} targets (0 … {last})", last = count.saturating_sub(1))]
    Index { index: usize, count: usize },
}

/// One database of the fleet.
#[derive(Debug, Clone)]
pub struct FleetTarget {
    pub name: String,
    pub target: Target,
    /// The overlay this target is applied with (wins over `--env`).
    pub env: Option<String>,
    /// `key=value` overrides, before the command line's `--var`.
    pub vars: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// An inventory, its targets in file order.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: String,
    pub targets: Vec<FleetTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    targets: indexmap::IndexMap<String, RawTarget>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Option<String>,
    url_env: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
    user: Option<String>,
    sslmode: Option<String>,
    service: Option<String>,
    env: Option<String>,
    #[serde(default)]
    vars: indexmap::IndexMap<String, serde_json::Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Inventory {
    /// Reads `path`; `env` looks up `url_env` variables.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, InventoryError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text, env)
    }

    pub fn parse(path: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, InventoryError> {
        let raw: RawInventory = serde_saphyr::from_str(text).map_err(|e| InventoryError::Invalid {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        if raw.targets.is_empty() {
            return Err(InventoryError::Invalid {
                path: path.to_string(),
                message: "`targets` is empty".into(),
            });
        }
        let mut targets = vec![];
        for (name, t) in raw.targets {
            let fail = |message: String| InventoryError::Target {
                path: path.to_string(),
                name: name.clone(),
                message,
            };
            let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !name_ok {
                return Err(fail(
                    "a target name is letters, digits, `_`, `-` and `.`, starting with a letter or digit (it names log directories)"
                        .into(),
                ));
            }
            let url = connection_url(&t, env).map_err(&fail)?;
            let target = Target::parse(&url).map_err(|e| fail(e.message))?;
            let vars = t
                .vars
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            targets.push(FleetTarget {
                name,
                target,
                env: t.env,
                vars,
                labels: t.labels,
            });
        }
        Ok(Self {
            path: path.to_string(),
            targets,
        })
    }

    /// The targets every selector (`key=value`; `name=…` matches the
    /// target's name) matches, in file order.
    pub fn select(&self, selectors: &[String]) -> Result<Vec<&FleetTarget>, InventoryError> {
        let mut wanted = vec![];
        for s in selectors {
            let Some((k, v)) = s.split_once('=') else {
                return Err(InventoryError::Selector { selector: s.clone() });
            };
            wanted.push((k.trim(), v.trim()));
        }
        let chosen: Vec<&FleetTarget> = self
            .targets
            .iter()
            .filter(|t| {
                wanted.iter().all(|(k, v)| match *k {
                    "name" => t.name == *v,
                    _ => t.labels.get(*k).is_some_and(|l| l == v),
                })
            })
            .collect();
        if chosen.is_empty() {
            return Err(InventoryError::NoneSelected {
                path: self.path.clone(),
                selectors: if selectors.is_empty() {
                    "(no selector)".into()
                } else {
                    selectors
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                },
            });
        }
        Ok(chosen)
    }
}

/// The URL of a target: `url`, the variable `url_env` names, or libpq
/// fields (which a URL carries as they are: `host=/socket/dir`, `service`).
fn connection_url(t: &RawTarget, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let fields = t.host.is_some() || t.port.is_some() || t.dbname.is_some() || t.user.is_some() || t.service.is_some();
    match (&t.url, &t.url_env, fields) {
        (Some(u), None, false) => Ok(u.clone()),
        (None, Some(var), false) => env(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("`url_env: {var}` names an environment variable that is not set")),
        (None, None, true) => {
            let enc = |s: &str| {
                url::form_urlencoded::byte_serialize(s.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            };
            let mut url = "postgres://".to_string();
            if let Some(u) = &t.user {
                url.push_str(&enc(u));
                url.push('@');
            }
            let mut query = vec![];
            match &t.host {
                // A socket directory is a query parameter, as libpq reads it.
                Some(h) if h.starts_with('/') => query.push(format!("host={}", enc(h))),
                Some(h) => url.push_str(h),
                None => {}
            }
            if let Some(p) = t.port {
                url.push_str(&format!(":{p}"));
            }
            url.push('/');
            if let Some(d) = &t.dbname {
                url.push_str(&enc(d));
            }
            for (k, v) in [("sslmode", &t.sslmode), ("service", &t.service)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(v)));
                }
            }
            if !query.is_empty() {
                url.push('?');
                url.push_str(&query.join("&"));
            }
            Ok(url)
        }
        (None, None, false) => {
            Err("no connection: give `url`, `url_env`, or libpq fields (host, port, dbname, user …)".into())
        }
        _ => Err("give one of `url`, `url_env` or libpq fields, not several".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "EU_URL").then(|| "postgres://maint:s3cret@db-eu/app".to_string())
    }

    const TEXT: &str = "targets:\n  eu:\n    url_env: EU_URL\n    env: prod\n    vars: { days: 60, mode: fast }\n    labels: { region: eu, tier: prod }\n  us:\n    host: db-us\n    port: 5433\n    dbname: my app\n    user: maint\n    sslmode: verify-full\n    labels: { region: us, tier: prod }\n  local:\n    host: /var/run/postgresql\n    dbname: app\n    labels: { tier: dev }\n";

    #[test]
    fn targets_come_from_urls_variables_or_libpq_fields() {
        let inv = Inventory::parse("targets.yaml", TEXT, &env).expect("valid");
        let names: Vec<&str> = inv.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["eu", "us", "local"]);
        assert_eq!(inv.targets[0].target.expose_url(), "postgres://maint:s3cret@db-eu/app");
        assert_eq!(inv.targets[0].vars, ["days=60", "mode=fast"]);
        assert_eq!(
            inv.targets[1].target.expose_url(),
            "postgres://maint@db-us:5433/my%20app?sslmode=verify-full"
        );
        assert_eq!(
            inv.targets[2].target.expose_url(),
            "postgres:///app?host=%2Fvar%2Frun%2Fpostgresql"
        );
    }

    #[test]
    fn selection_by_labels_and_name() {
        let inv = Inventory::parse("t.yaml", TEXT, &env).expect("valid");
        let names = |sel: &[&str]| -> Vec<String> {
            let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
            inv.select(&sel)
                .map(|v| v.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default()
        };
        assert_eq!(names(&["tier=prod"]), ["eu", "us"]);
        assert_eq!(names(&["tier=prod", "region=us"]), ["us"]);
        assert_eq!(names(&["name=local"]), ["local"]);
        assert!(inv.select(&["tier=staging".into()]).is_err());
        assert!(matches!(
            inv.select(&["tier".into()]),
            Err(InventoryError::Selector { .. })
        ));
    }

    #[test]
    fn mistakes_name_the_target_and_what_to_write() {
        let bad = |text: &str| Inventory::parse("t.yaml", text, &env).expect_err(text).to_string();
        assert!(
            bad("targets:\n  a:\n    url_env: NOPE\n")
                .contains("target `a`: `url_env: NOPE` names an environment variable that is not set")
        );
        assert!(bad("targets:\n  a:\n    url: postgres://x/y\n    host: h\n").contains("not several"));
        assert!(bad("targets:\n  a:\n    urll: postgres://x/y\n").contains("urll"));
        assert!(bad("targets:\n  a b:\n    url: postgres://x/y\n").contains("target name"));
        assert!(bad("targets: {}\n").contains("empty"));
    }
}
