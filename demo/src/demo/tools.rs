//! The command-line tools the demo runs for the vendor's factory, the terminals and the
//! operator (`vouch-provision`, `vouch-agent`, `vouchctl`): each run is the real binary next to
//! `vouch-demo`, and the narration prints it as the command line a person would type there, so
//! the demo teaches the commands while it shows what they do.
//!
//! Quoting for the printed lines is written here (a few lines for arguments with spaces or
//! shell characters) rather than taken from a crate: the text is only shown, never parsed.

use anyhow::{Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Demo;

/// One tool binary and how it is invoked.
#[derive(Clone)]
pub(crate) struct Tool {
    /// The name printed in the narration.
    pub name: &'static str,
    pub bin: PathBuf,
    /// Environment it runs with (for `vouchctl`: where the API is and the admin token).
    pub env: Vec<(String, String)>,
}

/// Names the environment's variables, never their values (`VOUCH_TOKEN` is the admin token).
impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("bin", &self.bin)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// `arg` as a shell would need it typed.
fn quoted(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,@+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The command line shown for `name args`.
pub(crate) fn shown(name: &str, args: &[String]) -> String {
    std::iter::once(name.to_owned())
        .chain(args.iter().map(|a| quoted(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `path` relative to `base` where it lies under it (for the printed command lines).
pub(crate) fn rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// How much of a tool's output the narration shows under its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Echo {
    /// The command line and every line it printed.
    All,
    /// Nothing (the same step was shown for another terminal already).
    Quiet,
}

impl Demo {
    /// Runs `tool args` in `cwd`, narrated as `who` according to `echo`; its standard output,
    /// or an error carrying everything it printed when it fails.
    pub(crate) fn tool(
        &self,
        who: &str,
        tool: &Tool,
        cwd: &Path,
        args: &[String],
        echo: Echo,
    ) -> Result<String> {
        self.check()?;
        if echo != Echo::Quiet {
            self.say(who, &format!("$ {}", shown(tool.name, args)));
        }
        let mut cmd = Command::new(&tool.bin);
        cmd.current_dir(cwd)
            .args(args.iter().map(OsString::from))
            .env("RUST_LOG", "warn")
            .env("TSS2_LOG", "all+NONE");
        for (k, v) in &tool.env {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`{}` (in {}) failed ({}):\n{stdout}{}",
                shown(tool.name, args),
                cwd.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if echo == Echo::All {
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                println!("{:>18}{line}", "");
            }
        }
        Ok(stdout)
    }
}

/// Owned arguments for [`Demo::tool`].
pub(crate) fn argv<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_command_lines_quote_what_a_shell_would_split() {
        let args = ["trust", "acme", "it's here", "a b", ""].map(String::from);
        assert_eq!(
            shown("vouchctl", &args),
            r"vouchctl trust acme 'it'\''s here' 'a b' ''"
        );
        assert_eq!(
            rel(Path::new("/tmp/d/vendor/vendor.pub"), Path::new("/tmp/d")),
            "vendor/vendor.pub"
        );
    }
}
