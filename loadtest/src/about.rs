//! What a run was made with: the command, the generator's version and build, the machine and
//! the date. A figure without them cannot be compared with a later one, so the report's header
//! and table and the JSON carry them. Everything here is best effort: a field that cannot be
//! read is left out, never an error.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct About {
    /// The generator's command line (a `--token`'s value replaced by `***`).
    pub command: String,
    /// The crate's version.
    pub version: String,
    /// `git rev-parse --short HEAD` in the working directory, when it is a checkout.
    pub commit: Option<String>,
    /// "release" or "debug", and the architecture.
    pub build: String,
    /// The CPU's model name (/proc/cpuinfo).
    pub cpu: Option<String>,
    /// Cores this process may use.
    pub cores: usize,
    /// The kernel's release (/proc/sys/kernel/osrelease).
    pub kernel: Option<String>,
    /// When the run started, UTC.
    pub date: String,
}

impl About {
    /// This process, this machine, now.
    pub fn here() -> About {
        About {
            command: command_line(std::env::args()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: git_commit(),
            build: format!(
                "{}, {}",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
                std::env::consts::ARCH
            ),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|t| cpu_model(&t)),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty()),
            date: utc(SystemTime::now()),
        }
    }

    /// "confab-loadtest 0.1.0, commit abc1234".
    pub fn versions(&self) -> String {
        match &self.commit {
            Some(c) => format!("confab-loadtest {}, commit {c}", self.version),
            None => format!("confab-loadtest {}", self.version),
        }
    }

    /// "AMD EPYC 7B13, 2 cores, Linux 6.1.0".
    pub fn machine(&self) -> String {
        let mut parts = vec![self.cpu.clone().unwrap_or_else(|| "CPU unknown".into())];
        parts.push(match self.cores {
            1 => "1 core".into(),
            n => format!("{n} cores"),
        });
        if let Some(k) = &self.kernel {
            parts.push(format!("Linux {k}"));
        }
        parts.join(", ")
    }
}

/// The arguments as one shell-like line; a token never appears in a report.
fn command_line(args: impl Iterator<Item = String>) -> String {
    let mut out = Vec::new();
    let mut secret_next = false;
    for a in args {
        if secret_next {
            out.push("***".to_owned());
            secret_next = false;
            continue;
        }
        if a == "--token" {
            secret_next = true;
            out.push(a);
            continue;
        }
        if a.starts_with("--token=") {
            out.push("--token=***".to_owned());
            continue;
        }
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
        out.push(if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        });
    }
    out.join(" ")
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty() && commit.len() <= 40).then_some(commit)
}

/// The first "model name" of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .filter(|m| !m.is_empty())
}

/// "2026-12-05 14:03:22 UTC" (the civil date from days since 1970, proleptic Gregorian).
fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01 (non-negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 12:34:56 (a leap day of a century leap year).
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc(t), "2000-02-29 12:34:56 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(utc(t), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn tokens_stay_out_of_the_command() {
        let args = [
            "confab-loadtest",
            "--token",
            "s3cret",
            "--token=other",
            "--report",
            "my dir",
        ]
        .map(String::from);
        let line = command_line(args.into_iter());
        assert_eq!(
            line,
            "confab-loadtest --token *** --token=*** --report 'my dir'"
        );
        assert!(!line.contains("s3cret") && !line.contains("other"));
    }

    #[test]
    fn the_machine_is_described() {
        let info = "processor\t: 0\nmodel name\t: AMD  EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        let a = About::here();
        assert!(a.cores >= 1);
        assert!(a.date.ends_with(" UTC"), "{}", a.date);
        assert!(a.machine().contains("core"));
        assert!(a.versions().starts_with("confab-loadtest "));
    }
}
