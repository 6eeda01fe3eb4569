//! The commands' pipelines, wired: where the parts below are put together.
//!
//! Owns: [`pipeline`] (starting the actors on their threads and draining them in order),
//! [`run`] (Pub/Sub → join → store until a signal) and [`demo`] (built-in producers →
//! join → store, then a replay). Must never: be imported by anything below it; the
//! command line (`cli`) is the only module above.

pub mod demo;
pub mod pipeline;
pub mod run;
