//! Local executor tests.
