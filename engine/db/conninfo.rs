//! Which PostgreSQL server, database and role a target means, decided once
//! and the same way libpq decides it, so dbmaint, `pg_dump`, `pg_restore`
//! and `psql` all reach exactly one place.
//!
//! Precedence per setting (libpq's): the URL (its authority, path and
//! query), then the service named by `?service=` or `PGSERVICE` (from
//! `PGSERVICEFILE` or `~/.pg_service.conf`, else `PGSYSCONFDIR` or
//! `pg_config --sysconfdir`), then the `PG*` environment, then the
//! defaults (a local socket when one exists, the OS user, the user's
//! database, `sslmode=prefer`). A setting dbmaint cannot honour is an
//! error, never silently dropped: a dropped `host` or `sslmode` would
//! connect somewhere else, or in clear text.
//!
//! The child processes get the resolved settings through their
//! environment (`PGHOST`, `PGSSLMODE`, …, `PGPASSWORD`), never their argv.

use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding_lite::decode;

/// libpq's `sslmode` values, with its meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A resolved PostgreSQL connection. `Debug` and `Display` never show the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// A host name, an IP address, or a socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    password: Option<String>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    /// The service whose settings were used, and the file it came from.
    pub service: Option<(String, PathBuf)>,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host={} port={} dbname={} user={} sslmode={}",
            self.host,
            self.port,
            self.dbname,
            self.user,
            self.effective_sslmode().as_str()
        )?;
        if self.password.is_some() {
            f.write_str(" password=********")?;
        }
        Ok(())
    }
}

/// The settings read from the URL, a service or the environment, before
/// defaults; `None` is "not given here".
#[derive(Default, Debug)]
struct Settings {
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    user: Option<String>,
    dbname: Option<String>,
    password: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    service: Option<String>,
}

impl Settings {
    /// Sets one libpq keyword; `Err` for one dbmaint does not honour.
    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        let slot = match key {
            "host" => &mut self.host,
            "hostaddr" => &mut self.hostaddr,
            "port" => &mut self.port,
            "user" => &mut self.user,
            "dbname" => &mut self.dbname,
            "password" => &mut self.password,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "service" => &mut self.service,
            // dbmaint sets its own name and timeouts on every session.
            "application_name" | "fallback_application_name" | "connect_timeout" => return Ok(()),
            _ => return Err(key.to_string()),
        };
        // A later keyword overrides an earlier one, as in libpq.
        *slot = Some(value);
        Ok(())
    }

    /// Fills what is still unset from `other` (a lower-precedence source).
    fn fill_from(&mut self, other: Settings) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            host,
            hostaddr,
            port,
            user,
            dbname,
            password,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            service
        );
    }
}

/// Reads the process environment (tests pass their own).
pub type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// Why a target does not name one connection dbmaint can make as libpq
/// would. Each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("a PostgreSQL target starts with `postgres://` or `postgresql://`")]
    NotPostgres,
    #[error("a `%` in the URL is not followed by two hex digits (write `%25` for a percent sign)")]
    BadPercent,
    #[error("a percent-encoded part of the URL is not UTF-8")]
    NotUtf8,
    #[error("an IPv6 host misses its `]`")]
    Ipv6Bracket,
    #[error(
        "URL parameter `{0}` is not supported by dbmaint (it would be ignored); supported: host, port, dbname, user, password, sslmode, sslrootcert, sslcert, sslkey, service"
    )]
    UnsupportedParameter(String),
    #[error("port `{0}` is not a port number")]
    BadPort(String),
    #[error("both `host` ({host}) and `hostaddr` ({hostaddr}) are set; dbmaint connects by `host` only: unset one")]
    HostAndHostaddr { host: String, hostaddr: String },
    #[error("`{0}` names several hosts; dbmaint maintains one server at a time: name the primary")]
    SeveralHosts(String),
    #[error("no user: set one in the URL or PGUSER")]
    NoUser,
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    BadSslMode(String),
    #[error(
        "service `{name}` is not defined in {looked}; define it there or point PGSERVICEFILE at the file that does"
    )]
    UndefinedService { name: String, looked: String },
    #[error("{file}:{line}: `{text}` is not `key=value`")]
    ServiceLine { file: String, line: usize, text: String },
    #[error("{file}:{line}: a service cannot name another service")]
    ServiceNamesService { file: String, line: usize },
    #[error(
        "{file}:{line}: service `{name}` sets `{key}`, which dbmaint does not support; remove it or connect with a URL"
    )]
    ServiceKey {
        file: String,
        line: usize,
        name: String,
        key: String,
    },
}

impl ConnInfo {
    /// Resolves a `postgres://` URL (possibly just `postgres://`, all from
    /// the environment) into one connection.
    pub fn resolve(url: &str, env: EnvFn<'_>) -> Result<Self, ConnInfoError> {
        let mut s = from_url(url)?;
        let service = s.service.clone().or_else(|| env("PGSERVICE"));
        let mut service_used = None;
        if let Some(name) = service {
            let (found, file) = service_settings(&name, env)?;
            s.fill_from(found);
            service_used = Some((name, file));
        }
        s.fill_from(from_env(env));

        let port = match &s.port {
            Some(p) => p.parse::<u16>().map_err(|_| ConnInfoError::BadPort(p.clone()))?,
            None => 5432,
        };
        // hostaddr is where libpq connects; host then only names the
        // server for certificate checks. dbmaint connects to one of them:
        // refuse the combination rather than pick one silently.
        let host = match (s.host, s.hostaddr) {
            (Some(h), Some(a)) if h != a => {
                return Err(ConnInfoError::HostAndHostaddr { host: h, hostaddr: a });
            }
            (Some(h), _) | (None, Some(h)) => h,
            (None, None) => default_host(port),
        };
        if host.contains(',') {
            return Err(ConnInfoError::SeveralHosts(host));
        }
        let user = match s.user {
            Some(u) => u,
            None => os_user().ok_or(ConnInfoError::NoUser)?,
        };
        let dbname = s.dbname.unwrap_or_else(|| user.clone());
        let sslmode = match &s.sslmode {
            Some(m) => SslMode::parse(m).ok_or_else(|| ConnInfoError::BadSslMode(m.clone()))?,
            None => SslMode::Prefer,
        };
        Ok(Self {
            host,
            port,
            user,
            dbname,
            password: s.password,
            sslmode,
            sslrootcert: s.sslrootcert,
            sslcert: s.sslcert,
            sslkey: s.sslkey,
            service: service_used,
        })
    }

    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The mode dbmaint actually uses: libpq ignores `sslmode` on a unix
    /// socket, and `require` with a root certificate verifies the chain
    /// (`verify-ca`), as libpq documents.
    pub fn effective_sslmode(&self) -> SslMode {
        match self.sslmode {
            _ if self.is_socket() => SslMode::Disable,
            SslMode::Require if self.sslrootcert.is_some() => SslMode::VerifyCa,
            m => m,
        }
    }

    /// The same connection for another database of the server (the
    /// scratch database of a restore check).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        Self {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The environment a libpq child process needs to reach exactly this
    /// connection; `PGSERVICE` is dropped because everything it said is
    /// here already. The password is included; never log this.
    pub fn child_env(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("PGHOST", Some(self.host.clone())),
            ("PGHOSTADDR", None),
            ("PGPORT", Some(self.port.to_string())),
            ("PGUSER", Some(self.user.clone())),
            ("PGDATABASE", Some(self.dbname.clone())),
            ("PGPASSWORD", self.password.clone()),
            ("PGSSLMODE", Some(self.sslmode.as_str().to_string())),
            ("PGSSLROOTCERT", self.sslrootcert.clone()),
            ("PGSSLCERT", self.sslcert.clone()),
            ("PGSSLKEY", self.sslkey.clone()),
            ("PGSERVICE", None),
            ("PGSERVICEFILE", None),
            ("PGOPTIONS", None),
        ]
    }
}

/// The settings a URL gives: authority, path and query, percent-decoded
/// (`+` is a plus sign, as in libpq; only `%XX` decodes).
fn from_url(url: &str) -> Result<Settings, ConnInfoError> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or(ConnInfoError::NotPostgres)?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let mut s = Settings::default();
    // The query first: its keywords and the URL's parts cannot both be
    // given without one being ignored, so a clash is an error below.
    let mut from_query = Settings::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k)?;
        let value = decode(v)?;
        from_query
            .set(&key, value)
            .map_err(ConnInfoError::UnsupportedParameter)?;
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        let (user, pw) = match u.split_once(':') {
            Some((user, pw)) => (user, Some(pw)),
            None => (u, None),
        };
        if !user.is_empty() {
            s.user = Some(decode(user)?);
        }
        if let Some(pw) = pw {
            s.password = Some(decode(pw)?);
        }
    }
    if !hostport.is_empty() {
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, rest) = v6.split_once(']').ok_or(ConnInfoError::Ipv6Bracket)?;
            (h.to_string(), rest.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if !host.is_empty() {
            s.host = Some(decode(&host)?);
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            s.port = Some(p.to_string());
        }
    }
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        s.dbname = Some(decode(p)?);
    }
    // `?host=/socket/dir` beside `@localhost` is how a socket directory is
    // named in a URL: the query keyword wins, as in libpq.
    let mut merged = from_query;
    merged.fill_from(s);
    Ok(merged)
}

fn from_env(env: EnvFn<'_>) -> Settings {
    let get = |k: &str| env(k);
    Settings {
        host: get("PGHOST"),
        hostaddr: get("PGHOSTADDR"),
        port: get("PGPORT"),
        user: get("PGUSER"),
        dbname: get("PGDATABASE"),
        password: get("PGPASSWORD"),
        sslmode: get("PGSSLMODE"),
        sslrootcert: get("PGSSLROOTCERT"),
        sslcert: get("PGSSLCERT"),
        sslkey: get("PGSSLKEY"),
        service: None,
    }
}

/// A service's settings: the user's file first, then the system's; the
/// first file that defines the service is the only one read (libpq).
fn service_settings(name: &str, env: EnvFn<'_>) -> Result<(Settings, PathBuf), ConnInfoError> {
    let mut files = Vec::new();
    match env("PGSERVICEFILE") {
        Some(f) => files.push(PathBuf::from(f)),
        None => {
            if let Some(home) = env("HOME") {
                files.push(Path::new(&home).join(".pg_service.conf"));
            }
        }
    }
    match env("PGSYSCONFDIR") {
        Some(d) => files.push(Path::new(&d).join("pg_service.conf")),
        None => {
            if let Some(d) = pg_sysconfdir() {
                files.push(d.join("pg_service.conf"));
            }
        }
    }
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if let Some(s) = parse_service(&text, name, file)? {
            return Ok((s, file.clone()));
        }
    }
    let looked: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Err(ConnInfoError::UndefinedService {
        name: name.to_string(),
        looked: if looked.is_empty() {
            "any service file".to_string()
        } else {
            looked.join(" or ")
        },
    })
}

/// One service's section of a `pg_service.conf` (INI: `[name]`, then
/// `key=value` lines; `#` comments).
fn parse_service(text: &str, name: &str, file: &Path) -> Result<Option<Settings>, ConnInfoError> {
    let mut inside = false;
    let mut found = None::<Settings>;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if inside {
                break;
            }
            inside = section == name;
            if inside {
                found = Some(Settings::default());
            }
            continue;
        }
        let Some(s) = found.as_mut().filter(|_| inside) else {
            continue;
        };
        let (k, v) = line.split_once('=').ok_or_else(|| ConnInfoError::ServiceLine {
            file: file.display().to_string(),
            line: n + 1,
            text: line.to_string(),
        })?;
        let key = k.trim();
        if key == "service" {
            return Err(ConnInfoError::ServiceNamesService {
                file: file.display().to_string(),
                line: n + 1,
            });
        }
        s.set(key, v.trim().to_string())
            .map_err(|key| ConnInfoError::ServiceKey {
                file: file.display().to_string(),
                line: n + 1,
                name: name.to_string(),
                key,
            })?;
    }
    Ok(found)
}

fn pg_sysconfdir() -> Option<PathBuf> {
    let out = std::process::Command::new("pg_config")
        .arg("--sysconfdir")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// libpq's default: the local socket directory when the server's socket is
/// there, else `localhost`.
fn default_host(port: u16) -> String {
    for dir in ["/var/run/postgresql", "/run/postgresql", "/tmp"] {
        if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
            return dir.to_string();
        }
    }
    "localhost".to_string()
}

fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Percent-decoding of URL parts as libpq does it: `%XX` decodes, every
/// other character (`+` included) stands for itself.
mod percent_encoding_lite {
    use super::ConnInfoError;

    pub fn decode(text: &str) -> Result<String, ConnInfoError> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(ConnInfoError::BadPercent)?;
                out.push(hex);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| ConnInfoError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn url_parts_decode_like_libpq() {
        let c = ConnInfo::resolve(
            "postgres://app:a+b%2B%40%3A%2F%25%20z@db.example.com:6432/my%20db?sslmode=verify-full",
            &env_of(&[]),
        )
        .expect("resolves");
        assert_eq!(c.password(), Some("a+b+@:/% z"));
        assert_eq!(
            (c.host.as_str(), c.port, c.dbname.as_str()),
            ("db.example.com", 6432, "my db")
        );
        assert_eq!(c.effective_sslmode(), SslMode::VerifyFull);
        assert!(!c.to_string().contains("a+b"), "password shown: {c}");
    }

    #[test]
    fn url_beats_service_beats_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("svc.conf");
        std::fs::write(
            &file,
            "# ours\n[other]\nhost=wrong\n[prod]\nhost=svc-host\nport=7000\ndbname=svcdb\nsslmode=require\n",
        )
        .expect("write");
        let file_s: &'static str = Box::leak(file.display().to_string().into_boxed_str());
        let env = env_of(Box::leak(Box::new([
            ("PGSERVICEFILE", file_s),
            ("PGHOST", "env-host"),
            ("PGUSER", "env-user"),
            ("PGDATABASE", "envdb"),
        ])));
        let c = ConnInfo::resolve("postgres:///urldb?service=prod", &env).expect("resolves");
        assert_eq!(c.host, "svc-host");
        assert_eq!(c.port, 7000);
        assert_eq!(c.dbname, "urldb");
        assert_eq!(c.user, "env-user");
        assert_eq!(c.sslmode, SslMode::Require);
        let e = ConnInfo::resolve("postgres://?service=missing", &env).expect_err("refused");
        assert!(
            matches!(&e, ConnInfoError::UndefinedService { name, .. } if name == "missing"),
            "{e}"
        );
        assert!(e.to_string().contains("service `missing` is not defined"), "{e}");
    }

    #[test]
    fn settings_dbmaint_would_drop_are_refused() {
        let e = ConnInfo::resolve("postgres://h/db?target_session_attrs=read-write", &env_of(&[])).expect_err("no");
        assert_eq!(e, ConnInfoError::UnsupportedParameter("target_session_attrs".into()));
        let e = ConnInfo::resolve("postgres://h1,h2/db", &env_of(&[])).expect_err("no");
        assert_eq!(e, ConnInfoError::SeveralHosts("h1,h2".into()));
        let e = ConnInfo::resolve("postgres://h/db?sslmode=verify", &env_of(&[])).expect_err("no");
        assert_eq!(e, ConnInfoError::BadSslMode("verify".into()));
    }

    #[test]
    fn sockets_ignore_sslmode_and_require_with_a_ca_verifies_it() {
        let c = ConnInfo::resolve("postgres://u@localhost/db?host=/tmp/s&sslmode=require", &env_of(&[])).expect("ok");
        assert_eq!(c.effective_sslmode(), SslMode::Disable);
        let c = ConnInfo::resolve("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem", &env_of(&[])).expect("ok");
        assert_eq!(c.effective_sslmode(), SslMode::VerifyCa);
        let c = ConnInfo::resolve("postgres://u@h/db", &env_of(&[("PGSSLMODE", "verify-full")])).expect("ok");
        assert_eq!(c.effective_sslmode(), SslMode::VerifyFull);
    }
}
