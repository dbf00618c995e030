//! Empty library target: lets tooling resolve the crate; the programs are in `main.rs`.
#![no_std]
