//! Tests of the Responses protocol across its files.
