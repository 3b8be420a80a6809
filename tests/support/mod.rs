//! Helpers shared by the integration tests.
//!
//! Each test binary compiles this module on its own and uses only part of it,
//! and `pub` here is crate-private by construction.
#![allow(dead_code, unreachable_pub)]

pub mod fuzz;
pub mod in_process;
pub mod mock_wiki;
pub mod real_wiki;
