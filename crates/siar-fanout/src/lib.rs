//! Renderers and delivery channels (filled in by the feeds, webhook and email work).
