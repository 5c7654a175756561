//! A throwaway PostgreSQL for the tests: one cluster per test process,
//! started from the machine's server binaries (`pg_config --bindir`, or
//! Debian's /usr/lib/postgresql/*/bin), as the `postgres` user through
//! `runuser` when the tests run as root (initdb refuses root), listening
//! only on a unix socket in a temp dir, `autovacuum=off` so counters stay
//! put. Each test gets a fresh database. A watchdog process stops the
//! cluster and removes its directory when the test process exits. If no
//! cluster can be started the test fails loudly; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    pub socket_dir: PathBuf,
    pub port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The role that logs in with a password (scram-sha-256), and its password.
pub const PW_USER: &str = "pw_user";
pub const PW_SECRET: &str = "Sup3r-s3cret_pw";

fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .filter(|d| d.join("initdb").exists())
        .expect("PostgreSQL server binaries not found: install `postgresql` (.ci/run does)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as `postgres` when we are root.
fn pg(bin: &Path, args: &[&str]) {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd.args(args).output().expect("start a PostgreSQL binary");
    assert!(
        out.status.success(),
        "{} {:?} failed: {}{}",
        bin.display(),
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Cluster {
    start_with("-c fsync=off")
}

/// Starts a cluster with extra server options (the benchmark turns fsync
/// on); stopped by the watchdog when this process exits.
pub fn start_with(settings: &str) -> Cluster {
    let base = std::env::temp_dir().join(format!("dbmaint-pg-{}", std::process::id()));
    let port = 20000 + (std::process::id() % 20000) as u16;
    // One role authenticates by password (the rest is trust), so tests can
    // prove a wrong password fails cleanly and a right one is never printed.
    launch(
        &base,
        port,
        &format!("local all {PW_USER} scram-sha-256\n"),
        true,
        &format!("-c listen_addresses='' {settings}"),
    );
    let cluster = Cluster { socket_dir: base, port };
    let admin_url = cluster.url("postgres");
    admin_statements(
        &admin_url,
        &[format!("CREATE ROLE {PW_USER} LOGIN SUPERUSER PASSWORD '{PW_SECRET}'")],
    );
    cluster
}

/// initdb into `base/data` (owned by `postgres` when we are root), the
/// pg_hba rules in front of initdb's, start with a socket in `base` plus
/// `opts`, and a watchdog that stops the server when this process exits.
fn launch(base: &Path, port: u16, hba_first: &str, keep_initdb_rules: bool, opts: &str) {
    let bin = bindir();
    fresh_dir(base);
    let data = base.join("data");
    pg(
        &bin.join("initdb"),
        &[
            "-D",
            data.to_str().unwrap_or_default(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    );
    let hba = data.join("pg_hba.conf");
    let rules = if keep_initdb_rules {
        std::fs::read_to_string(&hba).expect("read pg_hba.conf")
    } else {
        String::new()
    };
    std::fs::write(&hba, format!("{hba_first}{rules}")).expect("write pg_hba.conf");
    // Prepared transactions: a test pins a scratch database with one so
    // its DROP fails (the only hold `WITH (FORCE)` cannot break).
    let opts = format!(
        "-k {} -c autovacuum=off -c max_connections=200 -p {port} -c max_prepared_transactions=8 \
         -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=10000 {opts}",
        base.display()
    );
    start_server(&bin, base, &opts);
}

/// An empty directory `base`, owned by `postgres` when we are root.
fn fresh_dir(base: &Path) {
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base).expect("create the cluster directory");
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(base)
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "chown the cluster directory to postgres");
    }
}

/// Starts the server of `base/data` with `opts`, logging to `base/log`,
/// and its watchdog.
fn start_server(bin: &Path, base: &Path, opts: &str) {
    let data = base.join("data");
    pg(
        &bin.join("pg_ctl"),
        &[
            "-D",
            data.to_str().unwrap_or_default(),
            "-o",
            opts,
            "-l",
            base.join("log").to_str().unwrap_or_default(),
            "-w",
            "start",
        ],
    );
    watchdog(bin, &data, base);
}

/// Stops the server of `data` and removes `base` once this process is gone.
fn watchdog(bin: &Path, data: &Path, base: &Path) {
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runas}{pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {base}",
        pid = std::process::id(),
        runas = if is_root() { "runuser -u postgres -- " } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        base = base.display()
    );
    // Deliberately not waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .args(["-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the cluster watchdog");
}

/// The database name of a test cluster URL (`…/NAME?host=…`).
pub fn db_name(url: &str) -> &str {
    url.split('?').next().and_then(|s| s.rsplit('/').next()).expect("name")
}

/// Creates the login role `{prefix}_{database}` in `url`'s cluster, runs
/// `grants(role, database)` as the superuser, and returns `url` as that role.
pub fn role_url(url: &str, prefix: &str, grants: impl Fn(&str, &str) -> Vec<String>) -> String {
    let db = db_name(url);
    let role = format!("{prefix}_{db}");
    admin_statements(url, &grants(&role, db));
    url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1)
}

/// Runs admin statements on their own thread and runtime (the caller may
/// be inside another runtime).
pub fn admin_statements(url: &str, statements: &[String]) {
    let url = url.to_string();
    let statements = statements.to_vec();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut admin = connect(&url).await;
            for s in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|e| panic!("`{s}` failed: {e}"));
            }
        });
    })
    .join()
    .expect("admin statements");
}

/// A second cluster that speaks TLS on 127.0.0.1 and refuses plain TCP
/// (`hostssl` only in pg_hba), with a CA and a server certificate for
/// `localhost` made by the `openssl` binary for this process.
pub struct TlsCluster {
    pub socket_dir: PathBuf,
    pub port: u16,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
}

static TLS_CLUSTER: OnceLock<TlsCluster> = OnceLock::new();
static AUTOVACUUM_CLUSTER: OnceLock<Cluster> = OnceLock::new();
static REPLICATED: OnceLock<(Cluster, Cluster)> = OnceLock::new();

/// A role on the TLS cluster that logs in by password over TCP, and a
/// password with every character a URL must escape.
pub const ODD_USER: &str = "odd_user";
pub const ODD_SECRET: &str = "p+a@b:c/d%e f";

impl TlsCluster {
    pub fn get() -> &'static TlsCluster {
        TLS_CLUSTER.get_or_init(start_tls)
    }

    /// A TCP URL (no socket) for `db` with `query` appended.
    pub fn url(&self, host: &str, db: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/{db}?{query}", self.port)
    }

    /// A fresh database, created over the socket.
    pub fn fresh_db(&self) -> String {
        let name = format!("tls{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
        admin_statements(&self.socket_url("postgres"), &[format!("CREATE DATABASE {name}")]);
        name
    }

    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{db}?host={}",
            self.port,
            self.socket_dir.display()
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run `openssl` (install the openssl package; .ci/run does)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_tls() -> TlsCluster {
    let base = std::env::temp_dir().join(format!("dbmaint-pgtls-{}", std::process::id()));
    let certs = std::env::temp_dir().join(format!("dbmaint-pgtls-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    std::fs::create_dir_all(&certs).expect("certs dir");
    openssl(
        &certs,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=dbmaint test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        &certs,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(certs.join("san.ext"), "subjectAltName=DNS:localhost\n").expect("san");
    openssl(
        &certs,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    let port = free_port();
    // The server's key and certificate live in its own directory.
    let hba = format!(
        "local all all trust\nhostssl all {ODD_USER} 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 trust\n"
    );
    let key_dir = std::env::temp_dir().join(format!("dbmaint-pgtls-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&key_dir);
    std::fs::create_dir_all(&key_dir).expect("key dir");
    std::fs::copy(certs.join("server.crt"), key_dir.join("server.crt")).expect("copy cert");
    std::fs::copy(certs.join("server.key"), key_dir.join("server.key")).expect("copy key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(key_dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&key_dir)
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "chown the key directory to postgres");
    }
    launch_tls(&base, port, &hba, &key_dir);
    let cluster = TlsCluster {
        socket_dir: base,
        port,
        ca: certs.join("ca.crt"),
    };
    admin_statements(
        &cluster.socket_url("postgres"),
        &[format!(
            "CREATE ROLE {ODD_USER} LOGIN SUPERUSER PASSWORD '{}'",
            ODD_SECRET.replace('\'', "''")
        )],
    );
    cluster
}

fn launch_tls(base: &Path, port: u16, hba: &str, key_dir: &Path) {
    let opts = format!(
        "-c listen_addresses='127.0.0.1' -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
        dir = key_dir.display()
    );
    // Only our rules: initdb's admit plain `host` connections.
    launch(base, port, hba, false, &opts);
}

impl Cluster {
    pub fn get() -> &'static Cluster {
        CLUSTER.get_or_init(start)
    }

    /// A cluster of its own with autovacuum on, waking every second (the
    /// shared one runs without it, so counters stay where tests put
    /// them): for the tests about what autovacuum's workers look like.
    pub fn with_autovacuum() -> &'static Cluster {
        AUTOVACUUM_CLUSTER.get_or_init(|| {
            let base = std::env::temp_dir().join(format!("dbmaint-pg-av-{}", std::process::id()));
            // Socket only: the port names the socket file in `base`.
            let port = 5432;
            // The later `-c autovacuum=on` overrides launch's `off`.
            launch(
                &base,
                port,
                "",
                true,
                "-c listen_addresses='' -c fsync=off -c autovacuum=on -c autovacuum_naptime=1",
            );
            Cluster { socket_dir: base, port }
        })
    }

    /// A primary of its own and a streaming replica of it (`pg_basebackup
    /// -R` into a second data directory, reporting its position every
    /// second): for the tests of what a replica's lag does to a step.
    /// `(primary, replica)`; the replica is read-only.
    pub fn with_replica() -> &'static (Cluster, Cluster) {
        REPLICATED.get_or_init(|| {
            let bin = bindir();
            let base = std::env::temp_dir().join(format!("dbmaint-pg-rp-{}", std::process::id()));
            let port = 5432;
            launch(&base, port, "", true, "-c listen_addresses='' -c fsync=off");
            let rbase = std::env::temp_dir().join(format!("dbmaint-pg-rr-{}", std::process::id()));
            fresh_dir(&rbase);
            let rdata = rbase.join("data");
            // -R writes standby.signal and primary_conninfo (the socket).
            pg(
                &bin.join("pg_basebackup"),
                &[
                    "-h",
                    base.to_str().unwrap_or_default(),
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    rdata.to_str().unwrap_or_default(),
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                ],
            );
            let opts = format!(
                "-k {} -p {port} -c listen_addresses='' -c fsync=off -c hot_standby=on \
                 -c wal_receiver_status_interval=1s -c max_connections=200 -c max_prepared_transactions=8 \
                 -c shared_preload_libraries=pg_stat_statements",
                rbase.display()
            );
            start_server(&bin, &rbase, &opts);
            let primary = Cluster { socket_dir: base, port };
            let replica = Cluster {
                socket_dir: rbase,
                port,
            };
            (primary, replica)
        })
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{db}?host={}",
            self.port,
            self.socket_dir.display()
        )
    }

    /// `url` for the password role, with `password` in it.
    pub fn url_with_password(&self, db: &str, password: &str) -> String {
        format!(
            "postgres://{PW_USER}:{password}@localhost:{}/{db}?host={}",
            self.port,
            self.socket_dir.display()
        )
    }

    /// A fresh, empty database for one test.
    pub async fn fresh_db(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
        let mut admin = connect(&self.url("postgres")).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        self.url(&name)
    }
}

/// How many statements the server ran in `url`'s database while `during`
/// ran, counted by pg_stat_statements (loaded in every test cluster): a
/// measurement from the server's side, not a figure the engine reports
/// about itself. Only this database's counters are reset and read.
pub fn statements_during(url: &str, during: impl FnOnce()) -> i64 {
    server_statements(url, during).iter().map(|s| s.calls).sum()
}

/// The statements the server ran in `url`'s database while `during` ran,
/// as pg_stat_statements recorded them (normalized: constants become `$n`).
pub fn statements_ran(url: &str, during: impl FnOnce()) -> Vec<String> {
    server_statements(url, during).into_iter().map(|s| s.query).collect()
}

/// One pg_stat_statements entry: what the server counted of a statement.
#[derive(Debug, Clone)]
pub struct ServerStatement {
    pub query: String,
    pub calls: i64,
    pub rows: i64,
    pub shared_blks_hit: i64,
}

/// pg_stat_statements' entries for `url`'s database from `during` alone:
/// its counters are reset first.
pub fn server_statements(url: &str, during: impl FnOnce()) -> Vec<ServerStatement> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db_counters = "(SELECT oid FROM pg_database WHERE datname = current_database())";
    rt.block_on(async {
        let mut c = connect(url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset(0, {db_counters}, 0)"
        )))
        .execute(&mut c)
        .await
        .expect("reset pg_stat_statements");
    });
    during();
    rt.block_on(async {
        let mut c = connect(url).await;
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT query, calls, rows, shared_blks_hit FROM pg_stat_statements \
             WHERE dbid = {db_counters} AND query NOT LIKE '%pg_stat_statements%'"
        )))
        .fetch_all(&mut c)
        .await
        .expect("read pg_stat_statements")
        .into_iter()
        .map(
            |(query, calls, rows, shared_blks_hit): (String, i64, i64, i64)| ServerStatement {
                query,
                calls,
                rows,
                shared_blks_hit,
            },
        )
        .collect()
    })
}

pub async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::ConnectOptions;
    let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("test URL parses");
    opts.connect().await.expect("connect to the test cluster")
}

/// Runs `statements` (one string, one implicit transaction), then each of
/// `each` on its own (VACUUM, CREATE INDEX CONCURRENTLY …), on a fresh
/// database of the shared cluster; returns its URL.
pub fn seeded_db(statements: &str, each: &[&str]) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let url = Cluster::get().fresh_db().await;
        let mut c = connect(&url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_string()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("seeding failed: {e}"));
        for s in each {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("`{s}` failed: {e}"));
        }
        flush_stats(&mut c).await;
        url
    })
}

/// Makes this session's statistics (rows inserted, updated, deleted)
/// visible to every other session now, rather than when its backend exits
/// some time after the client left: a test comparing counters before and
/// after a command must not see a seed's arrive in between.
pub async fn flush_stats(c: &mut sqlx::PgConnection) {
    sqlx::raw_sql("SELECT pg_stat_force_next_flush()")
        .execute(&mut *c)
        .await
        .expect("flush statistics");
    // The flush happens when the backend goes idle after that statement,
    // before it reads the next one.
    sqlx::raw_sql("SELECT 1")
        .execute(&mut *c)
        .await
        .expect("statistics flushed");
}

/// A PgBouncer in transaction pooling mode in front of the shared test
/// cluster, on a free local port; stopped when dropped. Started as
/// `postgres` (PgBouncer refuses root). Fails loudly when `pgbouncer` is
/// missing (.ci/run installs it).
pub struct PgBouncer {
    pub port: u16,
    child: std::process::Child,
    dir: PathBuf,
}

impl PgBouncer {
    pub fn start(cluster: &Cluster) -> Self {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("pgbouncer not found: install the `pgbouncer` package (.ci/run does)");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("dbmaint-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pgbouncer dir");
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("userlist");
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={socket} port={cport}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
                 default_pool_size = 4\nlogfile = {dir}/log\npidfile = {dir}/pid\n\
                 ignore_startup_parameters = extra_float_digits,options\n",
                socket = cluster.socket_dir.display(),
                cport = cluster.port,
                dir = dir.display()
            ),
        )
        .expect("pgbouncer.ini");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "chown the pgbouncer directory");
        }
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", bin]);
            c
        } else {
            Command::new(bin)
        };
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        // Ready when it accepts connections.
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "pgbouncer did not start: {}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { port, child, dir }
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser forwards the signal to pgbouncer.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-f", &self.dir.display().to_string()])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
