//! Streaming masking of secret values and token prefixes, correct across chunk boundaries.
