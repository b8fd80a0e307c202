//! Figures (printed, never asserted): run with
//! `cargo test --test it slack::figures -- --ignored --nocapture`.
