//! Shared harness for the rind-server integration tests.
//!
//! Every test binary under `tests/` compiles this module on its own and uses only part of
//! it, so unused-item and unused-import warnings are expected and silenced here rather
//! than per item.
#![allow(dead_code, unused_imports)]

pub mod clock;
pub mod dns;
pub mod http;
pub mod lists;
pub mod server;
pub mod upstream;

pub use clock::*;
pub use dns::*;
pub use http::*;
pub use lists::*;
pub use server::*;
pub use upstream::*;
