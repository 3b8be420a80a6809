//! What MediaWiki's Action API says and how it reads what it is sent. Pure:
//! no I/O here, so every rule is unit-tested against recorded answers.

pub mod answers;
pub mod params;
pub mod titles;
