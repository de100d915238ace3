//! What bounds a schema cleaning and how it fails: the options [`super::clean_schema`] takes and its error.
//!
//! The bounds live here, with the cleaner, so the request-wide limits (`crate::limits`) can name the enum
//! bound without the cleaner depending on them.

/// Most `enum` values in one schema node (also the most a merged `anyOf` of enums may produce).
pub const MAX_ENUM_VALUES: usize = 10_000;

/// Limits and target-specific tweaks for [`clean_schema`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Deepest schema nesting accepted (each `properties`/`items`/`anyOf`/`$ref` step is one level).
    pub max_depth: usize,
    /// Most schema nodes produced, counting every `$ref` expansion.
    pub max_nodes: usize,
    /// Most values in one `enum` (or in the union of an `anyOf` of enums).
    pub max_enum_values: usize,
    /// Claude in VALIDATED mode rejects parameter objects without properties: give such a root object a
    /// required `reason` string property.
    pub require_reason_for_empty_object: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            max_depth: 32,
            max_nodes: 10_000,
            max_enum_values: MAX_ENUM_VALUES,
            require_reason_for_empty_object: false,
        }
    }
}

/// Why a schema could not be cleaned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is nested deeper than {max_depth} levels (at `{path}`)")]
    TooDeep { max_depth: usize, path: String },
    #[error("schema expands to more than {max_nodes} nodes (through $ref or allOf)")]
    TooLarge { max_nodes: usize },
    #[error("the schema's $ref lookups scan more than {max} members")]
    TooManyLookups { max: usize },
    #[error("an enum has more than {max} values (at `{path}`)")]
    TooManyEnumValues { max: usize, path: String },
}
