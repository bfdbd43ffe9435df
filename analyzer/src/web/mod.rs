//! The analyzer's own web page.

pub mod access;
pub mod page;
