//! A throwaway PostgreSQL server for tests and local clusters: a fresh cluster in a temporary
//! directory, listening on 127.0.0.1 on a free port, stopped (its whole process group) and
//! removed on drop, pass or fail. Debian's `postgresql` package provides the programs; as
//! root they run as the `postgres` user (initdb refuses root).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running throwaway server.
pub struct TestPostgres {
    child: Child,
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

/// Why no server could be started: not installed (a test may skip) or it failed.
#[derive(Debug)]
pub enum PostgresUnavailable {
    NotInstalled,
    Failed(String),
}

impl std::fmt::Display for PostgresUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostgresUnavailable::NotInstalled => {
                f.write_str("PostgreSQL is not installed (Debian package postgresql)")
            }
            PostgresUnavailable::Failed(why) => write!(f, "PostgreSQL did not start: {why}"),
        }
    }
}

impl TestPostgres {
    /// Starts a server, or says why not.
    pub fn start() -> Result<TestPostgres, PostgresUnavailable> {
        let bin = server_bin().ok_or(PostgresUnavailable::NotInstalled)?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            PostgresUnavailable::Failed(format!("{what}: {e}"))
        };
        let dir = std::env::temp_dir().join(format!(
            "confab-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| failed("temporary directory", &e))?;
        // Removes the directory if anything below fails.
        let cleanup = RemoveOnDrop(Some(dir.clone()));
        let user = run_as();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| failed("chown", &e))?;
        }
        let initdb = command(&bin.join("initdb"), &dir, user)
            .args(["-D", "data", "-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| failed("initdb", &e))?;
        if !initdb.status.success() {
            let err = String::from_utf8_lossy(&initdb.stderr).into_owned();
            return Err(failed("initdb", &err));
        }
        let port = free_port().map_err(|e| failed("a free port", &e))?;
        let child = spawn_server(&bin, &dir, port).map_err(|e| failed("postgres", &e))?;
        let mut server = TestPostgres {
            child,
            dir,
            port,
            bin,
        };
        std::mem::forget(cleanup);
        server.wait_ready()?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (as the `postgres` superuser, no password).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, PostgresUnavailable> {
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(name)
            .output()
            .map_err(|e| PostgresUnavailable::Failed(format!("createdb: {e}")))?;
        if !out.status.success() {
            return Err(PostgresUnavailable::Failed(format!(
                "createdb {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(self.url(name))
    }

    /// Runs SQL in database `name` with psql; returns its output (unaligned, tuples only).
    pub fn psql(&self, name: &str, sql: &str) -> Result<String, PostgresUnavailable> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(self.url(name))
            .args(["-c", sql])
            .output()
            .map_err(|e| PostgresUnavailable::Failed(format!("psql: {e}")))?;
        if !out.status.success() {
            return Err(PostgresUnavailable::Failed(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server again after [`TestPostgres::stop`], on the same port and data: a
    /// database that went away and came back.
    pub fn start_again(&mut self) -> Result<(), PostgresUnavailable> {
        self.child = spawn_server(&self.bin, &self.dir, self.port)
            .map_err(|e| PostgresUnavailable::Failed(format!("postgres: {e}")))?;
        self.wait_ready()
    }

    /// Stops the server: SIGTERM to its process group, a grace period, then SIGKILL.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self) -> Result<(), PostgresUnavailable> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(PostgresUnavailable::Failed(format!("exited: {status}")));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(PostgresUnavailable::Failed("not ready in 15 s".into()))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The newest installed server's programs.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// As root, the `postgres` user's ids (the server refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres").ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn command(program: &Path, dir: &Path, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

/// The server on `dir/data`, in its own process group.
fn spawn_server(bin: &Path, dir: &Path, port: u16) -> std::io::Result<Child> {
    command(&bin.join("postgres"), dir, run_as())
        .args(["-D", "data", "-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
