//! Session tests over in-memory duplex connections.
