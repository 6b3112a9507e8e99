//! vouch-verifier: the verifier service (placeholder while the workspace is laid out).
fn main() {}
