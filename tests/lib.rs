//! Harness for vouch's end-to-end tests (placeholder while the workspace is laid out).
