//! The `bookend` command's library: the seed scenario's applications and the
//! simulated demo, so that tests can run exactly what the binary runs.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod apps;
pub mod check;
pub mod demo;
pub mod kernel;
pub mod nc;
pub mod soak;
pub mod tap;
pub mod transport;
