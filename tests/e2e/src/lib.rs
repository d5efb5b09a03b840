//! `brindle-e2e`: end-to-end tests of the fabric live in `tests/`; this library
//! holds helpers they share.
