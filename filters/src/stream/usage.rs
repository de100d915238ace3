//! Token counts as Google reports them, read from every upstream event and written by every machine.

/// Token counts from `usageMetadata`. Google reports `total = prompt + candidates + thoughts`; `thoughts` is
/// not part of `candidates` and `cached` is part of `prompt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub candidates: u64,
    pub thoughts: u64,
    pub cached: u64,
    pub total: u64,
}
