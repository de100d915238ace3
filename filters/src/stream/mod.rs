//! (being written)
pub mod openai;
