//! vouch-agent: the terminal-side daemon (placeholder while the workspace is laid out).
fn main() {}
