//! `voyc-import scan`: a manifest made from a folder of recordings whose names carry their
//! metadata. [`walk`] lists the files (a seam where an object listing can plug in), and
//! [`pattern`] reads each path's fields.

pub mod pattern;
pub mod walk;

pub use pattern::Pattern;
