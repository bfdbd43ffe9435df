//! The analyzer's own web page.

pub mod page;
