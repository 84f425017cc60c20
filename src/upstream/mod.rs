//! B's calling policy over A's replicas: one pattern per file. (Temporary: the story of one
//! call replaces this file.)

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod deadline;
pub mod hedge;
pub mod outlier;
