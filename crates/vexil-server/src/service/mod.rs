//! The application layer: what the service does, with no knowledge of HTTP. A service takes the
//! narrow handles it needs (the snapshot, the assigner, the event pipeline), never the whole
//! application state, and answers in domain types that the HTTP layer maps to responses.

pub mod evaluation;
