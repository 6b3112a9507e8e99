//! vouch-provision: factory tooling (placeholder while the workspace is laid out).
fn main() {}
