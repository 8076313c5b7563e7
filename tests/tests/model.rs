//! Model layer tests.
