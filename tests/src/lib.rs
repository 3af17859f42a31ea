//! End-to-end tests for the transparency log: they start the real binaries
//! on `127.0.0.1` and stop them. The tests live in `tests/`.
