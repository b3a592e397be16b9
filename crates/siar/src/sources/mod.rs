//! Where releases come from besides the API: the drop folder and upstream feeds.

pub mod inbox;
pub mod upstream;
