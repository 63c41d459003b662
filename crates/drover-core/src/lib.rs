//! Drover's pure scheduling core.
//!
//! Invariants: no I/O, no clock, no threads, no async. Time (`now`, in microseconds) and
//! randomness (a seed) are inputs, so the same inputs always give the same outputs; the
//! simulator and the property tests depend on that.

pub mod coordinator;
pub mod dag;
pub mod model;
pub mod placement;
pub mod retry;
pub mod schedule;

pub use coordinator::*;
pub use model::*;
pub use placement::{PlacementSpec, ResourceRequest, Selector, Shard, Strategy};
